// SPDX-License-Identifier: GPL-2.0
/* Enums whose values have bit 31 set, for tests/test_btf_enums.py: an unsigned enum (kind_flag 0:
 * 4294967295, not -1), globals of it, and CO-RE enum value relocations that libbpf resolves
 * against a target BTF the test writes (libbpf sign-extends a 32-bit enum value into the
 * instruction). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum pybpf_state {
	PYBPF_UNSET = 0xffffffffu,
	PYBPF_LAZY = 0x80000000u,
	PYBPF_ZERO = 0,
};

struct pybpf_rec {
	enum pybpf_state state;
	__u32 seen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pybpf_rec);
} recs SEC(".maps");

/* A local flavor of it with small values: relocated against a target whose values have bit 31
 * set, the instruction gets libbpf's sign-extended value. */
enum pybpf_state___small {
	PYBPF_UNSET___small = 1,
	PYBPF_LAZY___small = 2,
	PYBPF_ZERO___small = 3,
};

enum pybpf_state g_state = PYBPF_UNSET;
enum pybpf_state g_lazy = PYBPF_LAZY;
__u64 out[4];

SEC("socket")
int enum_values(struct __sk_buff *skb)
{
	out[0] = bpf_core_enum_value(enum pybpf_state___small, PYBPF_UNSET___small);
	out[1] = bpf_core_enum_value(enum pybpf_state___small, PYBPF_LAZY___small);
	out[2] = bpf_core_enum_value(enum pybpf_state___small, PYBPF_ZERO___small);
	out[3] = bpf_core_enum_value_exists(enum pybpf_state, PYBPF_LAZY);
	__u32 zero = 0;
	struct pybpf_rec *rec = bpf_map_lookup_elem(&recs, &zero);
	if (rec) {
		rec->state = g_lazy;
		rec->seen += 1;
	}
	return 0;
}

/* The local values themselves have bit 31 set: libbpf checks the instruction against its
 * sign-extended local value (clang may have written it zero-extended). */
SEC("socket")
int enum_local_top(struct __sk_buff *skb)
{
	out[0] = bpf_core_enum_value(enum pybpf_state, PYBPF_UNSET);
	out[1] = bpf_core_enum_value(enum pybpf_state, PYBPF_LAZY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
