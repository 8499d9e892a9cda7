// SPDX-License-Identifier: GPL-2.0
/* Packet programs: XDP, tc, cgroup_skb, a socket filter and sk_lookup, each counting
 * what it sees in .bss, plus an XDP program that rewrites a packet for
 * BPF_PROG_TEST_RUN.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define TC_ACT_OK 0

__u64 xdp_packets = 0;
__u64 tc_packets = 0;
__u64 cgroup_packets = 0;
__u64 socket_packets = 0;
__u64 sk_lookups = 0;

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&xdp_packets, 1);
	return XDP_PASS;
}

/* Writes 0xAB over the first byte and answers XDP_TX when it could. */
SEC("xdp")
int xdp_mark(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + 1 > end)
		return XDP_DROP;
	data[0] = 0xAB;
	return XDP_TX;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&tc_packets, 1);
	return TC_ACT_OK;
}

SEC("cgroup_skb/egress")
int cgroup_count(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&cgroup_packets, 1);
	return 1; /* allow */
}

SEC("socket")
int socket_count(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&socket_packets, 1);
	return skb->len; /* keep the whole packet */
}

/* Runs when the namespace it is attached to looks up a socket for a new connection. */
SEC("sk_lookup")
int lookup_count(struct bpf_sk_lookup *ctx)
{
	__sync_fetch_and_add(&sk_lookups, 1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
