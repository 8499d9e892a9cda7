// SPDX-License-Identifier: GPL-2.0
/* tcx: two versions of a packet counter for one hook. Both count the IPv4 UDP packets to
 * `port` in one shared array (counts[0] by version a, counts[1] by version b), so a test can
 * swap them under traffic and check that every packet was counted exactly once. Each also
 * marks the first program of its hook to see a packet, to check the order before=/after= gave.
 * SEC("tcx/...") names the direction (libbpf >= 1.3 attaches them; pybpf gives libbpf 1.1 their type).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TCX_NEXT -1     /* enum tcx_action_base: let the next program of the hook run */
#define ETH_P_IP 0x0800
#define IPPROTO_UDP_ 17

const volatile __u16 port = 0;
__u64 counts[2];
__u64 first[2];          /* packets this version saw first on its hook */

static __always_inline int is_ours(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP_)
		return 0;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end)
		return 0;
	return udp->dest == bpf_htons(port);
}

static __always_inline int count(struct __sk_buff *skb, int version)
{
	if (!is_ours(skb))
		return TCX_NEXT;
	__sync_fetch_and_add(&counts[version], 1);
	if (skb->mark == 0) {
		skb->mark = version + 1;
		__sync_fetch_and_add(&first[version], 1);
	}
	return TCX_NEXT;
}

SEC("tcx/ingress")
int count_a(struct __sk_buff *skb)
{
	return count(skb, 0);
}

SEC("tcx/ingress")
int count_b(struct __sk_buff *skb)
{
	return count(skb, 1);
}

/* the same counter declared for egress, and as a plain tc program (no direction in its SEC()) */
SEC("tcx/egress")
int count_egress(struct __sk_buff *skb)
{
	return count(skb, 0);
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	return count(skb, 1);
}

char LICENSE[] SEC("license") = "GPL";
