// SPDX-License-Identifier: GPL-2.0
/* execsnoop for pybpf: one ring buffer record per exec(2) (pybpf.tools.execsnoop).
 *
 * sys_enter_execve keeps the arguments in a hash map by thread id (the new
 * image replaces them), sys_exit_execve adds the return value and the new
 * comm and submits. The record layout follows libbpf-tools' execsnoop.
 * Counters for `pybpf export`: `exec_counts` by (comm, errno), `execs_total`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

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

struct exec_key {
	char comm[TASK_COMM_LEN];
	__s32 errno_;   /* 0 or the positive errno of a failed exec */
};

static const struct exec_event empty_event = {};

__u64 execs_total = 0;
__u64 dropped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct exec_event);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct exec_key);
	__type(value, __u64);
} exec_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

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
	struct exec_key key = {};
	struct exec_event *e, *out;
	__u64 one = 1, *count;
	int ret = ctx->ret;

	e = bpf_map_lookup_elem(&pending, &tid);
	if (!e)
		return 0;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	key.errno_ = ret < 0 ? -ret : 0;
	__sync_fetch_and_add(&execs_total, 1);
	count = bpf_map_lookup_elem(&exec_counts, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&exec_counts, &key, &one, BPF_NOEXIST);

	if (ignore_failed && ret < 0)
		goto cleanup;
	out = bpf_ringbuf_reserve(&events, sizeof(*out), 0);
	if (!out) {
		__sync_fetch_and_add(&dropped, 1);
		goto cleanup;
	}
	e->retval = ret;
	e->ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(e->comm, key.comm, sizeof(e->comm));
	bpf_probe_read_kernel(out, sizeof(*out), e);
	bpf_ringbuf_submit(out, 0);
cleanup:
	bpf_map_delete_elem(&pending, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
