// SPDX-License-Identifier: GPL-2.0
/* wakeuptime for pybpf: time blocked, by the waker's kernel stack (pybpf.tools.wakeuptime).
 *
 * As libbpf-tools' wakeuptime: sched_switch stamps the task leaving the CPU; sched_wakeup
 * (run in the waker's context) adds the time it slept to (waker, target, waker's stack).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "stacks.h"

const volatile __u32 targ_pid = 0;
const volatile __u64 max_block_ns = -1;
const volatile __u64 min_block_ns = 1;
const volatile bool user_threads_only = false;

struct key_t {
	char waker[TASK_COMM_LEN];
	char target[TASK_COMM_LEN];
	int w_k_stack_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct key_t);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 pid = prev->tgid, tid = prev->pid;
	__u64 ts;

	if (targ_pid && targ_pid != pid)
		return 0;
	if (user_threads_only && (prev->flags & PF_KTHREAD))
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	static const __u64 zero;
	struct key_t key = {};
	__u32 pid = p->tgid, tid = p->pid;
	__u64 delta, *tsp, *count;

	if (targ_pid && targ_pid != pid)
		return 0;
	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &tid);
	if (delta < min_block_ns || delta > max_block_ns)
		return 0;
	key.w_k_stack_id = bpf_get_stackid(ctx, &stackmap, 0);
	bpf_probe_read_kernel(&key.target, sizeof(key.target), p->comm);
	bpf_get_current_comm(&key.waker, sizeof(key.waker));
	count = bpf_map_lookup_elem(&counts, &key);
	if (!count) {
		bpf_map_update_elem(&counts, &key, &zero, BPF_NOEXIST);
		count = bpf_map_lookup_elem(&counts, &key);
		if (!count)
			return 0;
	}
	__sync_fetch_and_add(count, delta);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
