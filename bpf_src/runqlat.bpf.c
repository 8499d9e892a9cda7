// SPDX-License-Identifier: GPL-2.0
/* runqlat for pybpf: run queue latency as a log2 histogram (pybpf.tools.runqlat).
 *
 * A task's wake-up (or its preemption while runnable) stamps the time; the
 * switch that puts it on a CPU adds the wait to slot log2(wait) of `hist`, a
 * BPF_F_MMAPABLE array that user space reads as a numpy view, with no syscall.
 * Units are microseconds, or milliseconds with targ_ms (as libbpf-tools' runqlat).
 * Per process (-P), thread (-L) or pid namespace (--pidnss): one histogram per key
 * in the `hists` hash map instead, with the first comm seen, as the C tool keeps them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tools_common.h"
#include "tools_filter.h"

#define MAX_SLOTS 26
#define TASK_RUNNING 0

const volatile bool targ_ms = false;
const volatile __u32 targ_tgid = 0;
const volatile bool targ_per_process = false;
const volatile bool targ_per_thread = false;
const volatile bool targ_per_pidns = false;

struct hist {
	__u32 slots[MAX_SLOTS];
	char comm[16];
};

static const struct hist zero_hist;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

__u64 latency_ns_sum = 0;   /* for the Prometheus histogram's _sum */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

static __always_inline void enqueue(__u32 tgid, __u32 pid)
{
	__u64 ts;

	if (!pid)
		return;
	if (targ_tgid && targ_tgid != tgid)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	enqueue(p->tgid, p->pid);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	enqueue(p->tgid, p->pid);
	return 0;
}

/* The pid namespace's inode number: task_active_pid_ns(), pid->numbers[pid->level].ns */
static __always_inline __u32 pid_namespace(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid upid;

	bpf_core_read(&upid, sizeof(upid), &pid->numbers[level]);
	return BPF_CORE_READ(upid.ns, ns.inum);
}

static __always_inline void count_per_key(struct task_struct *next, __u32 pid, __u64 slot)
{
	struct hist *h;
	__u32 key;

	if (targ_per_process)
		key = next->tgid;
	else if (targ_per_thread)
		key = pid;
	else
		key = pid_namespace(next);
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			return;
	}
	if (!h->comm[0])
		bpf_probe_read_kernel_str(h->comm, sizeof(h->comm), next->comm);
	__sync_fetch_and_add(&h->slots[slot], 1);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 *tsp, delta, slot, *count;
	__u32 pid;

	if (!cgroup_allowed())
		return 0;
	if (prev->__state == TASK_RUNNING)
		enqueue(prev->tgid, prev->pid);

	pid = next->pid;
	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &pid);
	if ((__s64)delta < 0)
		return 0;
	__sync_fetch_and_add(&latency_ns_sum, delta);
	delta /= targ_ms ? 1000000U : 1000U;
	slot = log2_u64(delta);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	if (targ_per_process || targ_per_thread || targ_per_pidns) {
		count_per_key(next, pid, slot);
		return 0;
	}
	count = bpf_map_lookup_elem(&hist, &(__u32){slot});
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
