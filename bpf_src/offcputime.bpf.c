// SPDX-License-Identifier: GPL-2.0
/* offcputime for pybpf: time spent off CPU, by kernel and user stack (pybpf.tools.offcputime).
 *
 * As libbpf-tools' offcputime: sched_switch (tp_btf) stamps the task leaving the CPU with
 * its stacks; when it comes back, the time away is added to its (pid, tgid, stacks) entry.
 * With export_stacks (pybpf export offcputime) the entry is keyed by comm and the frames
 * themselves, in nanoseconds (stacks.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "stacks.h"

const volatile bool kernel_threads_only = false;
const volatile bool user_threads_only = false;
const volatile __u64 max_block_us = -1;
const volatile __u64 min_block_us = 1;
const volatile bool filter_by_tgid = false;
const volatile bool filter_by_pid = false;
const volatile long state = -1;

struct key_t {
	__u32 pid;
	__u32 tgid;
	int user_stack_id;
	int kern_stack_id;
};

struct val_t {
	__u64 delta;
	char comm[TASK_COMM_LEN];
};

struct internal_key {
	__u64 start_ts;
	struct key_t key;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct internal_key);
	__uint(max_entries, 10240);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct key_t);
	__type(value, struct val_t);
	__uint(max_entries, 10240);
} info SEC(".maps");

struct export_key {
	char comm[TASK_COMM_LEN];
	__u64 kstack[EXPORT_STACK_DEPTH];
	struct user_stack ustack;
};

struct export_start {
	__u64 start_ts;
	struct export_key key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct export_start);
} export_scratch SEC(".maps");   /* built here: too big for the BPF stack */

/* where each thread left the CPU, for the exporter: empty, and costing nothing, unless exporting */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct export_start);
	__uint(max_entries, 10240);
} export_starts SEC(".maps");

/* the exporter's counts: the 10240 stacks used last are kept (an older one is evicted, and
 * its series restarts from 0: a counter reset to Prometheus); the tools size it to 1 entry */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct export_key);
	__type(value, __u64);
	__uint(max_entries, 10240);
} offcpu_ns SEC(".maps");

static __always_inline long task_state(struct task_struct *t)
{
	return BPF_CORE_READ(t, __state);
}

static __always_inline bool allow_record(struct task_struct *t)
{
	__u32 tgid = BPF_CORE_READ(t, tgid), pid = BPF_CORE_READ(t, pid);

	if (filter_by_tgid && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (filter_by_pid && !bpf_map_lookup_elem(&tids, &pid))
		return false;
	if (user_threads_only && (BPF_CORE_READ(t, flags) & PF_KTHREAD))
		return false;
	if (kernel_threads_only && !(BPF_CORE_READ(t, flags) & PF_KTHREAD))
		return false;
	if (state != -1 && task_state(t) != state)
		return false;
	return true;
}

/* export_stacks: stamp prev with its comm and frames (it is still `current` here) */
static __always_inline void export_leave(void *ctx, struct task_struct *prev, __u32 pid)
{
	__u32 zero = 0;
	struct export_start *s = bpf_map_lookup_elem(&export_scratch, &zero);

	if (!s)
		return;
	s->start_ts = bpf_ktime_get_ns();
	/* all 16 bytes (the kernel pads comm with NULs): a key holds no bytes of an older comm */
	bpf_probe_read_kernel(&s->key.comm, sizeof(s->key.comm), prev->comm);
	bpf_get_stack(ctx, s->key.kstack, sizeof(s->key.kstack), 0);
	if (BPF_CORE_READ(prev, flags) & PF_KTHREAD)
		__builtin_memset(s->key.ustack.addrs, 0, sizeof(s->key.ustack.addrs));
	else
		bpf_get_stack(ctx, s->key.ustack.addrs, sizeof(s->key.ustack.addrs), BPF_F_USER_STACK);
	s->key.ustack.pid = BPF_CORE_READ(prev, tgid);
	bpf_map_update_elem(&export_starts, &pid, s, BPF_ANY);
}

static __always_inline void export_return(__u32 pid)
{
	struct export_start *s = bpf_map_lookup_elem(&export_starts, &pid);
	__s64 delta;

	if (!s)
		return;
	delta = (__s64)(bpf_ktime_get_ns() - s->start_ts);
	if (delta >= 0 && delta / 1000U >= min_block_us && delta / 1000U <= max_block_us)
		add_count(&offcpu_ns, &s->key, delta);
	bpf_map_delete_elem(&export_starts, &pid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct internal_key *i_keyp, i_key = {};
	struct val_t *valp, val = {};
	__s64 delta;
	__u32 pid;

	if (export_stacks) {
		if (allow_record(prev)) {
			pid = BPF_CORE_READ(prev, pid);
			if (!pid)
				pid = bpf_get_smp_processor_id();
			export_leave(ctx, prev, pid);
		}
		export_return(BPF_CORE_READ(next, pid));
		return 0;
	}

	if (allow_record(prev)) {
		pid = BPF_CORE_READ(prev, pid);
		if (!pid)   /* the idle threads of different CPUs apart */
			pid = bpf_get_smp_processor_id();
		i_key.key.pid = pid;
		i_key.key.tgid = BPF_CORE_READ(prev, tgid);
		i_key.start_ts = bpf_ktime_get_ns();
		if (BPF_CORE_READ(prev, flags) & PF_KTHREAD)
			i_key.key.user_stack_id = -14;   /* -EFAULT: no user stack */
		else
			i_key.key.user_stack_id = bpf_get_stackid(ctx, &stackmap, BPF_F_USER_STACK);
		i_key.key.kern_stack_id = bpf_get_stackid(ctx, &stackmap, 0);
		bpf_map_update_elem(&start, &pid, &i_key, 0);
		bpf_probe_read_kernel_str(&val.comm, sizeof(prev->comm), prev->comm);
		if (bpf_map_update_elem(&info, &i_key.key, &val, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&info, &i_key.key))
			__sync_fetch_and_add(&dropped, 1);   /* info is full: this stack goes uncounted */
	}

	pid = BPF_CORE_READ(next, pid);
	i_keyp = bpf_map_lookup_elem(&start, &pid);
	if (!i_keyp)
		return 0;
	delta = (__s64)(bpf_ktime_get_ns() - i_keyp->start_ts);
	if (delta < 0)
		goto cleanup;
	delta /= 1000U;
	if (delta < min_block_us || delta > max_block_us)
		goto cleanup;
	valp = bpf_map_lookup_elem(&info, &i_keyp->key);
	if (valp)
		__sync_fetch_and_add(&valp->delta, delta);
cleanup:
	bpf_map_delete_elem(&start, &pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
