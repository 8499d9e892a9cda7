// SPDX-License-Identifier: GPL-2.0
/* sigsnoop for pybpf: signals sent, from signal:signal_generate (every signal the kernel
 * generates, with its result) or, with -k, from the kill/tkill/tgkill syscalls (entry
 * keeps the target by thread id, exit submits with the return value), as libbpf-tools'
 * sigsnoop. For `pybpf export`: `signals` by (signal, result) and `lost_events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools_events.h"

const volatile __u32 filtered_pid = 0;
const volatile __u32 target_signals = 0;   /* bit sig-1 set: trace that signal; 0: all */
const volatile bool failed_only = false;

struct sig_event {
	__u32 pid;
	__u32 tpid;
	__s32 sig;
	__s32 ret;
	char comm[16];
};

struct sig_key {
	__s32 sig;
	__s32 ret;
};

struct sig_event *unused_sig_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct sig_event);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sig_key);
	__type(value, __u64);
} signals SEC(".maps");

static __always_inline bool wanted(int sig)
{
	if (!target_signals)
		return true;
	return sig >= 1 && sig <= 32 && (target_signals & (1U << (sig - 1)));
}

static __always_inline void count_signal(int sig, int ret)
{
	struct sig_key key = { .sig = sig, .ret = ret };
	__u64 one = 1, *count = bpf_map_lookup_elem(&signals, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&signals, &key, &one, BPF_NOEXIST);
}

static __always_inline int enter(int tpid, int sig)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct sig_event e = {};

	if (!wanted(sig))
		return 0;
	if (filtered_pid && (id >> 32) != filtered_pid)
		return 0;
	e.pid = id >> 32;
	e.tpid = tpid;
	e.sig = sig;
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	bpf_map_update_elem(&pending, &tid, &e, BPF_ANY);
	return 0;
}

static __always_inline int leave(int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sig_event *e = bpf_map_lookup_elem(&pending, &tid);

	if (!e)
		return 0;
	count_signal(e->sig, ret);
	if (!failed_only || ret < 0) {
		e->ret = ret;
		submit_event(e, sizeof(*e));
	}
	bpf_map_delete_elem(&pending, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_kill")
int kill_entry(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[0], (int)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_kill")
int kill_exit(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_tkill")
int tkill_entry(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[0], (int)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_tkill")
int tkill_exit(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_tgkill")
int tgkill_entry(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[1], (int)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_tgkill")
int tgkill_exit(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx->ret);
}

SEC("tracepoint/signal/signal_generate")
int sig_trace(struct trace_event_raw_signal_generate *ctx)
{
	struct sig_event e = {};
	int ret = ctx->errno, sig = ctx->sig;
	__u64 id;

	if (failed_only && ret == 0)
		return 0;
	if (!wanted(sig))
		return 0;
	id = bpf_get_current_pid_tgid();
	if (filtered_pid && (id >> 32) != filtered_pid)
		return 0;
	count_signal(sig, ret);
	e.pid = id >> 32;
	e.tpid = ctx->pid;
	e.sig = sig;
	e.ret = ret;
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	submit_event(&e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
