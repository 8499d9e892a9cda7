// SPDX-License-Identifier: GPL-2.0
/* Counters on getppid(2): the core example of pybpf.
 *
 * Shows every piece a CO-RE tool needs: a const volatile filter set from
 * Python before load (.rodata), counters in .bss, initial values in .data
 * that user space may change while the program runs, a BPF_F_MMAPABLE array
 * read through a zero-copy view, a hash map keyed by tgid, and a relocated
 * field read (task->real_parent->tgid) that only CO-RE makes portable.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define NR_getppid 110

enum slot { SLOT_TRACEPOINT, SLOT_RAW_TP, SLOT_TP_BTF, SLOT_COUNT = 8 };

struct pair {
	__u64 count;
	__u32 parent_tgid;
	__u32 tgid;
};

const volatile __u32 want_tgid = 0;        /* 0: every process */
const volatile __s16 small_knob = -3;      /* range-check target for tests */

__u64 hits = 0;                             /* .bss */
__u32 last_parent_tgid = 0;                 /* .bss, from a CO-RE read */
__u64 per_slot_seen[SLOT_COUNT] = {};       /* .bss array */

__u64 increment = 1;                        /* .data: user space may change it */
char greeting[16] = "hello, pybpf";        /* .data: initial value from the ELF */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLOT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct pair);
} pairs SEC(".maps");

static __always_inline int wanted(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	return want_tgid == 0 || tgid == want_tgid;
}

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&slots, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
	if (slot < SLOT_COUNT)
		__sync_fetch_and_add(&per_slot_seen[slot], 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct task_struct *task;
	struct pair *pair, fresh = {};
	__u32 tgid;

	if (!wanted())
		return 0;
	__sync_fetch_and_add(&hits, increment);
	count(SLOT_TRACEPOINT);

	task = (struct task_struct *)bpf_get_current_task();
	last_parent_tgid = BPF_CORE_READ(task, real_parent, tgid);

	tgid = bpf_get_current_pid_tgid() >> 32;
	pair = bpf_map_lookup_elem(&pairs, &tgid);
	if (!pair) {
		fresh.tgid = tgid;
		bpf_map_update_elem(&pairs, &tgid, &fresh, BPF_NOEXIST);
		pair = bpf_map_lookup_elem(&pairs, &tgid);
		if (!pair)
			return 0;
	}
	__sync_fetch_and_add(&pair->count, 1);
	pair->parent_tgid = last_parent_tgid;
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int on_raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] == NR_getppid && wanted())
		count(SLOT_RAW_TP);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_btf_sys_enter, struct pt_regs *regs, long id)
{
	if (id == NR_getppid && wanted())
		count(SLOT_TP_BTF);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
