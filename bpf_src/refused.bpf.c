// SPDX-License-Identifier: GPL-2.0
/* Program types that some kernels refuse: fentry/fexit/fmod_ret/lsm (EPERM
 * before verification under lockdown) and kprobes (not built in everywhere).
 * Each test turns autoload off for all but the one it tries.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 calls = 0;

SEC("fentry/do_nanosleep")
int BPF_PROG(on_fentry, struct hrtimer_sleeper *t)
{
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("fexit/do_nanosleep")
int BPF_PROG(on_fexit, struct hrtimer_sleeper *t, int mode, int ret)
{
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("fmod_ret/security_file_open")
int BPF_PROG(on_fmod_ret, struct file *file, int ret)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(on_lsm, struct file *file, int ret)
{
	return ret;
}

SEC("kprobe/do_nanosleep")
int on_kprobe(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("kretprobe/do_nanosleep")
int on_kretprobe(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

/* An fentry whose target does not exist (as in bcc's fsslower/mdflush on a kernel
 * without the function), after a CO-RE relocation that succeeds: libbpf logs the
 * relocation (debug) before the failure, and the error must quote the failure. */
SEC("fentry/pybpf_no_such_function")
int BPF_PROG(on_missing_target, struct kiocb *iocb)
{
	__sync_fetch_and_add(&calls, iocb->ki_pos);
	return 0;
}
