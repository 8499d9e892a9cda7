// SPDX-License-Identifier: GPL-2.0
/* opensnoop for pybpf: one ring buffer record per open(2)/openat(2) (pybpf.tools.opensnoop).
 *
 * The enter tracepoints keep the path pointer and flags by thread id; the exit
 * tracepoints read the path and submit with the result. Layout as libbpf-tools'.
 * For `pybpf export`: `open_counts` by (comm, errno), `opens_total`, `lost_events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools_events.h"
#include "tools_filter.h"

#define TASK_COMM_LEN 16
#define NAME_MAX 255

const volatile __u32 targ_tgid = 0;
const volatile __u32 targ_pid = 0;
const volatile __u32 targ_uid = (__u32)-1;
const volatile bool targ_failed = false;

struct args_t {
	const char *fname;
	__s32 flags;
	__s32 mode;
};

struct open_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__s32 ret;
	__s32 flags;
	__u32 mode;
	char comm[TASK_COMM_LEN];
	char fname[NAME_MAX];
	char pad[1];
};

struct open_event *unused_open_event __attribute__((unused));

__u64 opens_total = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct comm_errno_key);
	__type(value, __u64);
} open_counts SEC(".maps");

static __always_inline bool trace_allowed(__u32 tgid, __u32 pid)
{
	if (targ_tgid && targ_tgid != tgid)
		return false;
	if (targ_pid && targ_pid != pid)
		return false;
	if (targ_uid != (__u32)-1 && targ_uid != (__u32)bpf_get_current_uid_gid())
		return false;
	return true;
}

static __always_inline int enter(const char *fname, int flags, int mode)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct args_t args = {};

	if (!cgroup_allowed() || !trace_allowed(id >> 32, tid))
		return 0;
	args.fname = fname;
	args.flags = flags;
	args.mode = mode;
	bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int on_open_enter(struct trace_event_raw_sys_enter *ctx)
{
	return enter((const char *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat_enter(struct trace_event_raw_sys_enter *ctx)
{
	return enter((const char *)ctx->args[1], (int)ctx->args[2], (int)ctx->args[3]);
}

static __always_inline int leave(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	char comm[TASK_COMM_LEN];
	struct open_event *e;
	struct args_t *ap;
	int ret;

	ap = bpf_map_lookup_elem(&start, &tid);
	if (!ap)
		return 0;
	ret = ctx->ret;
	bpf_get_current_comm(comm, sizeof(comm));
	__sync_fetch_and_add(&opens_total, 1);
	count_comm_errno(&open_counts, comm, ret);

	if (targ_failed && ret >= 0)
		goto cleanup;
	e = reserve_event(sizeof(*e));
	if (!e)
		goto cleanup;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = tid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = ret;
	e->flags = ap->flags;
	e->mode = ap->mode;
	__builtin_memcpy(e->comm, comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(e->fname, sizeof(e->fname), ap->fname) < 0)
		e->fname[0] = '\0';
	e->pad[0] = 0;
	bpf_ringbuf_submit(e, 0);
cleanup:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_open")
int on_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int on_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx);
}

char LICENSE[] SEC("license") = "GPL";
