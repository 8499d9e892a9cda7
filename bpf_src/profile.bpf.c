// SPDX-License-Identifier: GPL-2.0
/* profile for pybpf: sampled stacks on a CPU clock (pybpf.tools.profile).
 *
 * A perf_event program on PERF_COUNT_SW_CPU_CLOCK (one event per CPU, opened by
 * pybpf.perf) counts each (pid, comm, kernel stack, user stack) it samples, as
 * libbpf-tools' profile does; user space names the frames (pybpf.symbolize).
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
__u64 dropped = 0;          /* counts map full */

SEC("perf_event")
int do_perf_event(struct bpf_perf_event_data *ctx)
{
	static const __u64 one = 1;
	struct key_t key = {};
	__u64 id = bpf_get_current_pid_tgid(), *valp;
	__u32 pid = id >> 32, tid = id;

	if (!include_idle && tid == 0)
		return 0;
	if (filter_by_pid && !bpf_map_lookup_elem(&pids, &pid))
		return 0;
	if (filter_by_tid && !bpf_map_lookup_elem(&tids, &tid))
		return 0;
	__sync_fetch_and_add(&samples, 1);

	key.pid = pid;
	bpf_get_current_comm(&key.name, sizeof(key.name));
	key.kern_stack_id = user_stacks_only ? -1 : bpf_get_stackid(&ctx->regs, &stackmap, 0);
	key.user_stack_id = kernel_stacks_only ? -1 : bpf_get_stackid(&ctx->regs, &stackmap, BPF_F_USER_STACK);

	valp = bpf_map_lookup_elem(&counts, &key);
	if (valp) {
		__sync_fetch_and_add(valp, 1);
		return 0;
	}
	if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST)) {
		valp = bpf_map_lookup_elem(&counts, &key);   /* another CPU made it meanwhile */
		if (valp)
			__sync_fetch_and_add(valp, 1);
		else
			__sync_fetch_and_add(&dropped, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
