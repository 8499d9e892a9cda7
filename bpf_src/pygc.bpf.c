// SPDX-License-Identifier: GPL-2.0
/* pygc: CPython garbage collections per generation and their pauses
 * (USDT python:gc__start(int generation), python:gc__done(Py_ssize_t collected)). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#define GENERATIONS 3
#define SLOTS 32

const volatile __u32 targ_tgid = 0;

struct start {
	__u64 ts;
	__s32 generation;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

__u64 collections[GENERATIONS] = {};  /* gc__done seen, per generation */
__u64 started[GENERATIONS] = {};      /* gc__start seen, per generation */
__u64 collected[GENERATIONS] = {};    /* objects collected (gc__done's argument) */
__u64 pause_ns[GENERATIONS] = {};     /* total pause */
__u64 max_pause_ns[GENERATIONS] = {};
__u64 hist[GENERATIONS][SLOTS] = {};  /* log2 histogram of pauses in microseconds */
__u64 unmatched = 0;                  /* gc__done without a gc__start (attached mid-collection) */

static __always_inline __u32 log2l(__u64 v)
{
	__u32 r = 0;

	while (v > 1 && r < SLOTS - 1) {
		v >>= 1;
		r++;
	}
	return r;
}

SEC("usdt")
int on_gc_start(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct start s = {};
	long generation = 0;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	bpf_usdt_arg(ctx, 0, &generation);
	if (generation < 0 || generation >= GENERATIONS)
		return 0;
	s.ts = bpf_ktime_get_ns();
	s.generation = generation;
	bpf_map_update_elem(&starts, &tid, &s, BPF_ANY);
	__sync_fetch_and_add(&started[generation], 1);
	return 0;
}

SEC("usdt")
int on_gc_done(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct start *s;
	long n = 0;
	__u64 delta;
	__u32 g, slot;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s) {
		__sync_fetch_and_add(&unmatched, 1);
		return 0;
	}
	delta = bpf_ktime_get_ns() - s->ts;
	g = s->generation;
	bpf_map_delete_elem(&starts, &tid);
	if (g >= GENERATIONS)
		return 0;
	bpf_usdt_arg(ctx, 0, &n);
	__sync_fetch_and_add(&collections[g], 1);
	if (n > 0)
		__sync_fetch_and_add(&collected[g], n);
	__sync_fetch_and_add(&pause_ns[g], delta);
	if (delta > max_pause_ns[g])
		max_pause_ns[g] = delta;
	slot = log2l(delta / 1000);
	if (slot < SLOTS)
		__sync_fetch_and_add(&hist[g][slot], 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
