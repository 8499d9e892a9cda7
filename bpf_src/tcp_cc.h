/* SPDX-License-Identifier: GPL-2.0 */
/* A TCP congestion control written in BPF (struct_ops): Reno through the kernel's own
 * tcp_reno_* kfuncs, counting its calls. tcp_cc_v1.bpf.c and tcp_cc_v2.bpf.c are two versions
 * of it under the same name, so that one link is updated from the first to the second.
 * The name is a placeholder that tests replace in the object with a name of their own.
 */
#ifndef __PYBPF_TCP_CC_H
#define __PYBPF_TCP_CC_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define PYBPF_CC_NAME "pybpf_cc_XXXXXX"   /* 15 characters: TCP_CA_NAME_MAX - 1 */
#ifndef PYBPF_CC_SEC
#define PYBPF_CC_SEC ".struct_ops.link"   /* a test builds it as ".struct_ops" too */
#endif

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

const volatile __u32 cc_version = CC_VERSION;
__u64 init_calls;
__u64 cong_avoid_calls;     /* one per cwnd update the stack asks for */
__u64 ssthresh_calls;
__u32 last_cwnd;

SEC("struct_ops")
void BPF_PROG(cc_init, struct sock *sk)
{
	__sync_fetch_and_add(&init_calls, 1);
}

SEC("struct_ops")
void BPF_PROG(cc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&cong_avoid_calls, 1);
	tcp_reno_cong_avoid(sk, ack, acked);
	last_cwnd = ((struct tcp_sock *)sk)->snd_cwnd;
}

SEC("struct_ops")
__u32 BPF_PROG(cc_ssthresh, struct sock *sk)
{
	__sync_fetch_and_add(&ssthresh_calls, 1);
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops")
__u32 BPF_PROG(cc_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC(PYBPF_CC_SEC)
struct tcp_congestion_ops pybpf_cc = {
	.init = (void *)cc_init,
	.cong_avoid = (void *)cc_cong_avoid,
	.ssthresh = (void *)cc_ssthresh,
	.undo_cwnd = (void *)cc_undo_cwnd,
	.name = PYBPF_CC_NAME,
};

char LICENSE[] SEC("license") = "GPL";

#endif
