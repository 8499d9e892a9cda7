// SPDX-License-Identifier: GPL-2.0
/* execsnoop for pybpf: one ring buffer record per exec(2) (pybpf.tools.execsnoop).
 *
 * sys_enter_execve keeps the arguments in a hash map by thread id (the new
 * image replaces them), sys_exit_execve adds the return value and the new
 * comm and submits. The record layout follows libbpf-tools' execsnoop, and so
 * does its size: only the arguments' bytes are sent (variable-size records).
 * Counters for `pybpf export`: `exec_counts` by (comm, errno), `execs_total`,
 * `lost_events` (tools_events.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools_events.h"
#include "tools_filter.h"

#define TASK_COMM_LEN 16
#define ARGSIZE 128
#define TOTAL_MAX_ARGS 20
#define FULL_MAX_ARGS_ARR (TOTAL_MAX_ARGS * ARGSIZE)
#define LAST_ARG (FULL_MAX_ARGS_ARR - ARGSIZE)

const volatile bool ignore_failed = true;
const volatile __u32 targ_uid = (__u32)-1;   /* -1: every uid */
const volatile int max_args = TOTAL_MAX_ARGS;

struct exec_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__s32 retval;
	__s32 args_count;
	__u32 args_size;
	char comm[TASK_COMM_LEN];
	char args[FULL_MAX_ARGS_ARR];
};

static const struct exec_event empty_event = {};

__u64 execs_total = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct exec_event);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct comm_errno_key);
	__type(value, __u64);
} exec_counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task;
	struct exec_event *e;
	const char **args = (const char **)(ctx->args[1]);
	const char *argp;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	int ret, i;

	if (!cgroup_allowed())
		return 0;
	if (targ_uid != (__u32)-1 && targ_uid != uid)
		return 0;
	if (bpf_map_update_elem(&pending, &tid, &empty_event, BPF_NOEXIST))
		return 0;
	e = bpf_map_lookup_elem(&pending, &tid);
	if (!e)
		return 0;

	task = (struct task_struct *)bpf_get_current_task();
	e->pid = id >> 32;
	e->uid = uid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->args_count = 0;
	e->args_size = 0;

	ret = bpf_probe_read_user_str(e->args, ARGSIZE, (const char *)ctx->args[0]);
	if (ret < 0)
		return 0;
	if (ret <= ARGSIZE)
		e->args_size += ret;
	else {
		e->args[0] = '\0';   /* the filename did not fit */
		e->args_size++;
	}
	e->args_count++;

	for (i = 1; i < TOTAL_MAX_ARGS && i < max_args; i++) {
		if (bpf_probe_read_user(&argp, sizeof(argp), &args[i]) || !argp)
			return 0;
		if (e->args_size > LAST_ARG)
			return 0;
		ret = bpf_probe_read_user_str(&e->args[e->args_size], ARGSIZE, argp);
		if (ret < 0 || ret > ARGSIZE)
			return 0;
		e->args_count++;
		e->args_size += ret;
	}
	/* more arguments than we keep: say so as libbpf-tools does */
	if (bpf_probe_read_user(&argp, sizeof(argp), &args[max_args]) == 0 && argp)
		e->args_count++;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int on_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct exec_event *e;
	__u64 len;
	int ret = ctx->ret;

	e = bpf_map_lookup_elem(&pending, &tid);
	if (!e)
		return 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__sync_fetch_and_add(&execs_total, 1);
	count_comm_errno(&exec_counts, e->comm, ret);
	if (ignore_failed && ret < 0)
		goto cleanup;
	e->retval = ret;
	e->ts_ns = bpf_ktime_get_ns();
	len = __builtin_offsetof(struct exec_event, args) + e->args_size;
	if (len <= sizeof(*e))
		submit_event(e, len);
cleanup:
	bpf_map_delete_elem(&pending, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
