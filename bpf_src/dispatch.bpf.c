// SPDX-License-Identifier: GPL-2.0
/* Dispatchers for the exactly-once upgrade switch (pybpf.upgrade).
 *
 * Tracepoint, raw tracepoint, uprobe and perf_event links cannot be updated
 * in place (the kernel has no update_prog for them).  Instead of the tool's
 * program, one of these dispatchers is attached to the hook, once; it
 * tail-calls whatever program sits in slot 0 of its one-slot PROG_ARRAY.
 * An upgrade is one bpf_map_update_elem() of that slot: every event reads
 * the slot exactly once (one RCU-protected load in the tail call), so it
 * runs either the old program or the new one, never both and never neither.
 *
 * A tail call needs the caller and the callee to be of the same program
 * type, so there is one dispatcher per type, each with its own slot map (a
 * PROG_ARRAY takes the type of the first program that uses it); pybpf loads
 * only the one a hook needs.  With the slot empty the tail call falls
 * through and the event is ignored.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define SLOT(name)                                  \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY);      \
		__uint(max_entries, 1);                     \
		__type(key, __u32);                         \
		__type(value, __u32);                       \
	} name SEC(".maps")

SLOT(slot_tracepoint);
SLOT(slot_raw_tracepoint);
SLOT(slot_kprobe);
SLOT(slot_perf_event);

SEC("tracepoint")
int dispatch_tracepoint(void *ctx)
{
	bpf_tail_call(ctx, &slot_tracepoint, 0);
	return 0;
}

SEC("raw_tp")
int dispatch_raw_tracepoint(void *ctx)
{
	bpf_tail_call(ctx, &slot_raw_tracepoint, 0);
	return 0;
}

SEC("kprobe")
int dispatch_kprobe(void *ctx)  /* uprobes and uretprobes are kprobe-type programs */
{
	bpf_tail_call(ctx, &slot_kprobe, 0);
	return 0;
}

SEC("perf_event")
int dispatch_perf_event(void *ctx)
{
	bpf_tail_call(ctx, &slot_perf_event, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
