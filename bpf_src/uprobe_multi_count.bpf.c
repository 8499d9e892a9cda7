// SPDX-License-Identifier: GPL-2.0
/* uprobe_multi: one program on many user functions; the attach cookie says which one fired. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_FUNCS 256

const volatile __u32 target_tgid = 0;   /* 0: every process */
__u64 calls[MAX_FUNCS];                 /* by cookie */
__u64 out_of_range;

static __always_inline int count(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (target_tgid && (bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	if (cookie < MAX_FUNCS)
		__sync_fetch_and_add(&calls[cookie], 1);
	else
		__sync_fetch_and_add(&out_of_range, 1);
	return 0;
}

SEC("uprobe.multi")
int count_calls(struct pt_regs *ctx)
{
	return count(ctx);
}

SEC("uretprobe.multi")
int count_returns(struct pt_regs *ctx)
{
	return count(ctx);
}

char LICENSE[] SEC("license") = "GPL";
