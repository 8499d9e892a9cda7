// SPDX-License-Identifier: GPL-2.0
/* USDT probes: argument decoding, cookies and semaphores (tests/test_usdt.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#define MAX_ARGS 12

const volatile __u32 want_tgid = 0;

__s64 args[MAX_ARGS] = {};   /* the last hit's arguments, as bpf_usdt_arg() read them */
__s32 arg_cnt = -1;          /* bpf_usdt_arg_cnt() of the last hit */
__s32 arg_err = 0;           /* the first error bpf_usdt_arg() returned, 0 if none */
__u64 hits = 0;
__u64 last_cookie = 0;
__u64 guarded_hits = 0;
__u64 audit_hits = 0;

static __always_inline int wanted(void)
{
	return want_tgid == 0 || (bpf_get_current_pid_tgid() >> 32) == want_tgid;
}

SEC("usdt")
int on_args(struct pt_regs *ctx)
{
	long value;
	int i, err;

	if (!wanted())
		return 0;
	arg_cnt = bpf_usdt_arg_cnt(ctx);
	for (i = 0; i < MAX_ARGS; i++) {
		if (i >= arg_cnt)
			break;
		err = bpf_usdt_arg(ctx, i, &value);
		if (err) {
			if (!arg_err)
				arg_err = err;
			break;
		}
		args[i] = value;
	}
	last_cookie = bpf_usdt_cookie(ctx);
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("usdt")
int on_guarded(struct pt_regs *ctx)
{
	if (wanted())
		__sync_fetch_and_add(&guarded_hits, 1);
	return 0;
}

/* Auto-attach from the section name: Debian's CPython (python3.11 on Debian 12, python3.13 on 13,
   named by its link), every process. */
SEC("usdt//usr/bin/python3:python:audit")
int on_audit(struct pt_regs *ctx)
{
	if (wanted())
		__sync_fetch_and_add(&audit_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
