// SPDX-License-Identifier: GPL-2.0
/* wakeuptime for pybpf: time blocked, by the waker's kernel stack (pybpf.tools.wakeuptime).
 *
 * As libbpf-tools' wakeuptime: sched_switch stamps the task leaving the CPU; sched_wakeup
 * (run in the waker's context) adds the time it slept to (waker, target, waker's stack).
 * With export_stacks (pybpf export wakeuptime) the waker's frames themselves are the key
 * (stacks.h).
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

struct export_key {
	char waker[TASK_COMM_LEN];
	char target[TASK_COMM_LEN];
	__u64 kstack[EXPORT_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct export_key);
} export_scratch SEC(".maps");   /* built here: too big for the BPF stack */

/* the exporter's counts: the 10240 stacks used last are kept (an older one is evicted, and
 * its series restarts from 0: a counter reset to Prometheus); the tools size it to 1 entry */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct export_key);
	__type(value, __u64);
	__uint(max_entries, 10240);
} blocked_ns SEC(".maps");

static __always_inline void export_wakeup(void *ctx, struct task_struct *p, __u64 delta)
{
	__u32 zero = 0;
	struct export_key *key = bpf_map_lookup_elem(&export_scratch, &zero);

	if (!key)
		return;
	bpf_get_current_comm(&key->waker, sizeof(key->waker));
	bpf_probe_read_kernel(&key->target, sizeof(key->target), p->comm);
	bpf_get_stack(ctx, key->kstack, sizeof(key->kstack), 0);
	add_count(&blocked_ns, key, delta);
}

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
	struct key_t key = {};
	__u32 pid = p->tgid, tid = p->pid;
	__u64 delta, *tsp;

	if (targ_pid && targ_pid != pid)
		return 0;
	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &tid);
	if (delta < min_block_ns || delta > max_block_ns)
		return 0;
	if (export_stacks) {
		export_wakeup(ctx, p, delta);
		return 0;
	}
	key.w_k_stack_id = bpf_get_stackid(ctx, &stackmap, 0);
	bpf_probe_read_kernel(&key.target, sizeof(key.target), p->comm);
	bpf_get_current_comm(&key.waker, sizeof(key.waker));
	add_count(&counts, &key, delta);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
