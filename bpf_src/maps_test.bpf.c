// SPDX-License-Identifier: GPL-2.0
/* Test object for pybpf's map API: one map of every kind pybpf types.
 *
 * on_getppid counts getppid(2) calls of one tgid (want_tgid, set before load)
 * into an mmapable array, a hash, an LRU hash and per-CPU maps, so tests can
 * compare views, syscall lookups and batch lookups while it counts.
 * copy_records (run with test_run) copies struct values field by field from
 * recs_in to recs_out, whose layout differs, so a wrong field offset on the
 * Python side shows up as a wrong value. bump_inner increments element 0 of
 * whichever inner map outer[0] currently holds.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define N_SLOTS 64
#define N_RECS 4

struct tstat {
	__u64 count;
	__u32 tgid;
	__u16 cpu_hint;
	__u8 flags;
};

struct rec_in {
	__u8 tag;
	__u64 big;
	__s16 small;
	char name[5];
	__u32 arr[3];
	struct {
		__u16 lo;
		__u16 hi;
	} inner;
};

struct rec_out {
	__u64 big;
	__u32 arr[3];
	__s16 small;
	__u16 lo;
	__u16 hi;
	__u8 tag;
	char name[5];
};

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

const volatile __u32 want_tgid = 0;
__u64 seen = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, N_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct tstat);
} stat_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct tstat);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);     /* 4 bytes: the kernel pads each CPU's slot to 8 */
} pcpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u32);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u64);
} lifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, N_RECS);
	__type(key, __u32);
	__type(value, struct rec_in);
} recs_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, N_RECS);
	__type(key, __u32);
	__type(value, struct rec_out);
} recs_out SEC(".maps");

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a },
};

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	struct tstat *st, fresh = {};
	__u64 *v, one = 1;
	__u32 *w, one32 = 1;

	if (want_tgid && tgid != want_tgid)
		return 0;
	__sync_fetch_and_add(&seen, 1);
	v = bpf_map_lookup_elem(&slots, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	st = bpf_map_lookup_elem(&stat_slots, &zero);
	if (st) {
		__sync_fetch_and_add(&st->count, 1);
		st->tgid = tgid;
	}
	st = bpf_map_lookup_elem(&stats, &tgid);
	if (!st) {
		fresh.tgid = tgid;
		bpf_map_update_elem(&stats, &tgid, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &tgid);
	}
	if (st)
		__sync_fetch_and_add(&st->count, 1);
	v = bpf_map_lookup_elem(&lru, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&lru, &tgid, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&pcpu_array, &zero);
	if (v)
		*v += 1;
	w = bpf_map_lookup_elem(&pcpu_hash, &tgid);
	if (w)
		*w += 1;
	else
		bpf_map_update_elem(&pcpu_hash, &tgid, &one32, BPF_NOEXIST);
	return 0;
}

static __always_inline int copy_one(__u32 key)
{
	struct rec_in *in = bpf_map_lookup_elem(&recs_in, &key);
	struct rec_out out = {};

	if (!in)
		return -1;
	out.big = in->big;
	out.arr[0] = in->arr[0];
	out.arr[1] = in->arr[1];
	out.arr[2] = in->arr[2];
	out.small = in->small;
	out.lo = in->inner.lo;
	out.hi = in->inner.hi;
	out.tag = in->tag;
	__builtin_memcpy(out.name, in->name, sizeof(out.name));
	return bpf_map_update_elem(&recs_out, &key, &out, BPF_ANY);
}

SEC("xdp")
int copy_records(struct xdp_md *ctx)
{
	if (copy_one(0) || copy_one(1) || copy_one(2) || copy_one(3))
		return XDP_ABORTED;
	return XDP_PASS;
}

SEC("xdp")
int bump_inner(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *v;
	void *inner = bpf_map_lookup_elem(&outer, &zero);

	if (!inner)
		return XDP_DROP;
	v = bpf_map_lookup_elem(inner, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	return XDP_PASS;
}

/* Reads slot 1 (written by user space through a view) into slot 2. */
SEC("xdp")
int echo_slot(struct xdp_md *ctx)
{
	__u32 one = 1, two = 2;
	__u64 *src = bpf_map_lookup_elem(&slots, &one);
	__u64 *dst = bpf_map_lookup_elem(&slots, &two);

	if (!src || !dst)
		return XDP_ABORTED;
	*dst = *src * 2 + 1;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
