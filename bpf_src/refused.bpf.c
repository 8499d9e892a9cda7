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
