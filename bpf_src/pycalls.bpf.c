// SPDX-License-Identifier: GPL-2.0
/* pycalls: calls and time per Python function (file:function), from USDT
 * python:function__entry / function__return(const char *file, const char *func, int line).
 * CPython 3.11 fires function__entry only while the thread has a trace or profile function
 * set, but function__return on every return of a Python frame (the profile function's own
 * included): a return counts only when it matches the frame on top of the thread's stack. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#define FILE_LEN 96
#define FUNC_LEN 64
#define DEPTH 64

const volatile __u32 targ_tgid = 0;

struct func_key {
	char file[FILE_LEN];
	char func[FUNC_LEN];
};

struct func_stats {
	__u64 calls;
	__u64 total_ns;   /* time between entry and return, callees included */
	__u64 returns;
};

struct frame {
	__u64 ts;
	__u64 file;   /* the code object's co_filename and co_name, as the probe passed them */
	__u64 func;
};

struct stack {
	__u32 depth;
	__u32 _pad;
	struct frame frames[DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct func_key);
	__type(value, struct func_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct stack);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct stack);
} scratch SEC(".maps");

__u64 entries = 0;
__u64 returns = 0;
__u64 too_deep = 0;
__u64 full = 0;

static __always_inline struct func_key *read_key(long file, long func)
{
	/* a per-CPU struct stack doubles as scratch for the key */
	__u32 one = 1;
	struct func_key *key = bpf_map_lookup_elem(&scratch, &one);

	if (!key)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	bpf_probe_read_user_str(key->file, FILE_LEN, (void *)file);
	bpf_probe_read_user_str(key->func, FUNC_LEN, (void *)func);
	return key;
}

SEC("usdt")
int on_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0;
	struct func_key *key;
	struct func_stats *st, init = {1, 0, 0};
	struct stack *stack;
	long file = 0, func = 0;
	__u32 depth;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	__sync_fetch_and_add(&entries, 1);
	bpf_usdt_arg(ctx, 0, &file);
	bpf_usdt_arg(ctx, 1, &func);
	key = read_key(file, func);
	if (!key)
		return 0;
	st = bpf_map_lookup_elem(&stats, key);
	if (st)
		__sync_fetch_and_add(&st->calls, 1);
	else if (bpf_map_update_elem(&stats, key, &init, BPF_NOEXIST)) {
		if ((st = bpf_map_lookup_elem(&stats, key)))
			__sync_fetch_and_add(&st->calls, 1);
		else
			__sync_fetch_and_add(&full, 1);
	}

	stack = bpf_map_lookup_elem(&stacks, &tid);
	if (!stack) {
		struct stack *fresh = bpf_map_lookup_elem(&scratch, &zero);

		if (!fresh)
			return 0;
		fresh->depth = 0;
		bpf_map_update_elem(&stacks, &tid, fresh, BPF_NOEXIST);
		stack = bpf_map_lookup_elem(&stacks, &tid);
		if (!stack)
			return 0;
	}
	depth = stack->depth;
	if (depth < DEPTH) {
		stack->frames[depth].ts = bpf_ktime_get_ns();
		stack->frames[depth].file = file;
		stack->frames[depth].func = func;
	} else
		__sync_fetch_and_add(&too_deep, 1);
	stack->depth = depth + 1;
	return 0;
}

SEC("usdt")
int on_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct func_key *key;
	struct func_stats *st;
	struct stack *stack;
	long file = 0, func = 0;
	__u32 depth;
	__u64 start;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	__sync_fetch_and_add(&returns, 1);
	stack = bpf_map_lookup_elem(&stacks, &tid);
	if (!stack || stack->depth == 0)
		return 0;   /* no traced frame open: entered before we attached, or untraced */
	depth = stack->depth - 1;
	if (depth >= DEPTH) {
		stack->depth = depth;   /* past what we keep: just unwind */
		return 0;
	}
	bpf_usdt_arg(ctx, 0, &file);
	bpf_usdt_arg(ctx, 1, &func);
	if (stack->frames[depth].file != file || stack->frames[depth].func != func)
		return 0;   /* the return of a frame whose entry did not fire */
	stack->depth = depth;
	start = stack->frames[depth].ts;
	key = read_key(file, func);
	if (!key)
		return 0;
	st = bpf_map_lookup_elem(&stats, key);
	if (st) {
		__sync_fetch_and_add(&st->total_ns, bpf_ktime_get_ns() - start);
		__sync_fetch_and_add(&st->returns, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
