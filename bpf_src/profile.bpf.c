// SPDX-License-Identifier: GPL-2.0
/* profile for pybpf: sampled stacks on a CPU clock (pybpf.tools.profile).
 *
 * A perf_event program on PERF_COUNT_SW_CPU_CLOCK (one event per CPU, opened by
 * pybpf.perf) counts each (pid, comm, kernel stack, user stack) it samples, as
 * libbpf-tools' profile does; user space names the frames (pybpf.symbolize).
 * With export_stacks (pybpf export profile) it counts by the frames instead (stacks.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "stacks.h"

const volatile bool kernel_stacks_only = false;
const volatile bool user_stacks_only = false;
const volatile bool include_idle = false;
const volatile bool filter_by_pid = false;
const volatile bool filter_by_tid = false;

struct key_t {
	__u32 pid;
	__s32 kern_stack_id;
	__s32 user_stack_id;
	char name[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct key_t);
	__type(value, __u64);
	__uint(max_entries, 10240);
} counts SEC(".maps");

__u64 samples = 0;          /* every sample taken (after the filters) */

struct export_key {
	char comm[TASK_COMM_LEN];
	__u64 kstack[EXPORT_STACK_DEPTH];
	struct user_stack ustack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct export_key);
} export_scratch SEC(".maps");   /* the key is built here: too big for the BPF stack */

/* the exporter's counts: the 10240 stacks used last are kept (an older one is evicted, and
 * its series restarts from 0: a counter reset to Prometheus); the tools size it to 1 entry */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct export_key);
	__type(value, __u64);
	__uint(max_entries, 10240);
} stack_samples SEC(".maps");

static __always_inline int export_sample(struct bpf_perf_event_data *ctx, __u32 pid)
{
	__u32 zero = 0;
	struct export_key *key = bpf_map_lookup_elem(&export_scratch, &zero);

	if (!key)
		return 0;
	bpf_get_current_comm(&key->comm, sizeof(key->comm));
	/* bpf_get_stack() zero-fills what it does not write, and all of it on an error */
	bpf_get_stack(ctx, key->kstack, sizeof(key->kstack), 0);
	bpf_get_stack(ctx, key->ustack.addrs, sizeof(key->ustack.addrs), BPF_F_USER_STACK);
	key->ustack.pid = pid;
	add_count(&stack_samples, key, 1);
	return 0;
}

SEC("perf_event")
int do_perf_event(struct bpf_perf_event_data *ctx)
{
	struct key_t key = {};
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = id;

	if (!include_idle && tid == 0)
		return 0;
	if (filter_by_pid && !bpf_map_lookup_elem(&pids, &pid))
		return 0;
	if (filter_by_tid && !bpf_map_lookup_elem(&tids, &tid))
		return 0;
	__sync_fetch_and_add(&samples, 1);
	if (export_stacks)
		return export_sample(ctx, pid);

	key.pid = pid;
	bpf_get_current_comm(&key.name, sizeof(key.name));
	key.kern_stack_id = user_stacks_only ? -1 : bpf_get_stackid(&ctx->regs, &stackmap, 0);
	key.user_stack_id = kernel_stacks_only ? -1 : bpf_get_stackid(&ctx->regs, &stackmap, BPF_F_USER_STACK);

	add_count(&counts, &key, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
