// SPDX-License-Identifier: GPL-2.0
/* cpudist for pybpf: on-CPU (or, with targ_offcpu, off-CPU) time per scheduling
 * slice as log2 histograms (pybpf.tools.cpudist), from tp_btf/sched_switch, as
 * libbpf-tools' cpudist: one histogram per key of `hists` (u32 -1: all tasks;
 * the tgid with -P, the tid with -L), each with the first comm seen.
 * For `pybpf export`: the same map, and `slice_ns_sum` for the histogram's _sum.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tools_common.h"
#include "tools_filter.h"

#define MAX_SLOTS 36
#define TASK_RUNNING 0

const volatile bool targ_per_process = false;
const volatile bool targ_per_thread = false;
const volatile bool targ_offcpu = false;
const volatile bool targ_ms = false;
const volatile __u32 targ_tgid = (__u32)-1;

struct hist {
	__u32 slots[MAX_SLOTS];
	char comm[16];
};

static const struct hist zero_hist;
__u64 slice_ns_sum = 0;

/* every event, whatever the key: what `pybpf export cpudist` serves (a live numpy view) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} total_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

static __always_inline void store_start(__u32 tgid, __u32 pid, __u64 ts)
{
	if (targ_tgid != (__u32)-1 && targ_tgid != tgid)
		return;
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

static __always_inline void update_hist(struct task_struct *task, __u32 tgid, __u32 pid, __u64 ts)
{
	__u64 delta, *tsp, slot;
	struct hist *h;
	__u32 id;

	if (targ_tgid != (__u32)-1 && targ_tgid != tgid)
		return;
	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp || ts < *tsp)
		return;
	id = targ_per_process ? tgid : targ_per_thread ? pid : (__u32)-1;
	h = bpf_map_lookup_elem(&hists, &id);
	if (!h) {
		bpf_map_update_elem(&hists, &id, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &id);
		if (!h)
			return;
		bpf_probe_read_kernel_str(h->comm, sizeof(h->comm), task->comm);
	}
	delta = ts - *tsp;
	__sync_fetch_and_add(&slice_ns_sum, delta);
	delta /= targ_ms ? 1000000U : 1000U;
	slot = log2_u64(delta);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	{
		__u32 idx = slot;
		__u64 *total = bpf_map_lookup_elem(&total_slots, &idx);

		if (total)
			__sync_fetch_and_add(total, 1);
	}
	__sync_fetch_and_add(&h->slots[slot], 1);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 ts = bpf_ktime_get_ns();

	if (!cgroup_allowed())
		return 0;
	if (targ_offcpu) {
		store_start(prev->tgid, prev->pid, ts);
		update_hist(next, next->tgid, next->pid, ts);
	} else {
		if (prev->__state == TASK_RUNNING)
			update_hist(prev, prev->tgid, prev->pid, ts);
		store_start(next->tgid, next->pid, ts);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
