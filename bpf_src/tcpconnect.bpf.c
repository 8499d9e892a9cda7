// SPDX-License-Identifier: GPL-2.0
/* tcpconnect for pybpf: active TCP connects (pybpf.tools.tcpconnect), on tracepoints.
 *
 * libbpf-tools' tcpconnect kprobes tcp_v4/v6_connect and reports the connects that
 * returned 0, i.e. that put the socket in SYN_SENT. Kernels without kprobes (this one)
 * refuse that; here the sock:inet_sock_set_state tracepoint sees CLOSE -> SYN_SENT in
 * the connecting task and keeps the socket by thread id, and the connect() syscall's
 * exit tracepoint reports it, once the source port is bound (inet_hash_connect runs
 * after the state change). Records and counts as the C tool's; `connects` for export.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tools_events.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MAX_PORTS 64

const volatile __u32 filter_pid = 0;
const volatile __u32 filter_uid = (__u32)-1;
const volatile int filter_ports_len = 0;
const volatile __u16 filter_ports[MAX_PORTS] = {};   /* host order */
const volatile bool do_count = false;
const volatile bool source_port = false;

struct connect_event {
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 ts_us;
	__u32 af;
	__u32 pid;
	__u32 uid;
	__u16 sport;   /* host order */
	__u16 dport;   /* host order */
	char task[16];
};

struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 af;
	__u16 sport;
	__u16 dport;
};

struct dest_key {
	__u8 daddr[16];
	__u32 af;
	__u32 dport;
};

/* A connect in flight; `closed` once refused before connect() returned: closing and
 * tcp_disconnect() then clear the socket's ports and addresses, so the tuple the C tool
 * read at tcp_v4_connect's return is taken from the SYN_SENT -> CLOSE event instead. */
struct pending_connect {
	__u64 sk;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 closed;
};

struct connect_event *unused_connect_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct pending_connect);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, __u64);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct dest_key);
	__type(value, __u64);
} connects SEC(".maps");

static __always_inline bool port_filtered(__u16 port)
{
	int i;

	if (!filter_ports_len)
		return false;
	for (i = 0; i < MAX_PORTS && i < filter_ports_len; i++)
		if (port == filter_ports[i])
			return false;
	return true;
}

static __always_inline void bump(void *map, void *key)
{
	__u64 one = 1, *count = bpf_map_lookup_elem(map, key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct pending_connect pc = { .sk = (__u64)ctx->skaddr }, *known;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->oldstate == TCP_SYN_SENT && ctx->newstate == TCP_CLOSE) {
		/* refused before connect() returned: closing gives the port back (inet_num = 0) */
		known = bpf_map_lookup_elem(&sockets, &tid);
		if (!known || known->sk != pc.sk)
			return 0;
		known->sport = ctx->sport;
		known->dport = ctx->dport;
		known->family = ctx->family;
		if (ctx->family == AF_INET) {
			bpf_probe_read_kernel(known->saddr, 4, ctx->saddr);
			bpf_probe_read_kernel(known->daddr, 4, ctx->daddr);
		} else {
			bpf_probe_read_kernel(known->saddr, 16, ctx->saddr_v6);
			bpf_probe_read_kernel(known->daddr, 16, ctx->daddr_v6);
		}
		known->closed = 1;
		return 0;
	}
	if (ctx->oldstate != TCP_CLOSE || ctx->newstate != TCP_SYN_SENT)
		return 0;
	if (!tid || (filter_pid && (id >> 32) != filter_pid))
		return 0;
	if (filter_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != filter_uid)
		return 0;
	bpf_map_update_elem(&sockets, &tid, &pc, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int on_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct connect_event e = {};
	struct dest_key dest = {};
	struct flow_key flow = {};
	struct pending_connect *pc;
	struct sock *sk;
	__u16 sport;

	pc = bpf_map_lookup_elem(&sockets, &tid);
	if (!pc)
		return 0;
	sk = (struct sock *)pc->sk;
	if (pc->closed) {
		e.af = pc->family;
		sport = pc->sport;
		e.dport = pc->dport;
		__builtin_memcpy(e.saddr, pc->saddr, sizeof(e.saddr));
		__builtin_memcpy(e.daddr, pc->daddr, sizeof(e.daddr));
	} else {
		sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		e.af = BPF_CORE_READ(sk, __sk_common.skc_family);
		e.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (e.af == AF_INET) {
			bpf_core_read(e.saddr, 4, &sk->__sk_common.skc_rcv_saddr);   /* 4 bytes, not 16 */
			bpf_core_read(e.daddr, 4, &sk->__sk_common.skc_daddr);
		} else {
			BPF_CORE_READ_INTO(&e.saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
			BPF_CORE_READ_INTO(&e.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
		}
	}
	bpf_map_delete_elem(&sockets, &tid);
	if (!sport)
		return 0;   /* tcp_v4_connect failed after SYN_SENT (no port): the C tool skips ret != 0 */
	if (port_filtered(e.dport))
		return 0;
	e.sport = source_port ? sport : 0;
	__builtin_memcpy(dest.daddr, e.daddr, sizeof(dest.daddr));
	dest.af = e.af;
	dest.dport = e.dport;
	bump(&connects, &dest);
	if (do_count) {
		__builtin_memcpy(flow.saddr, e.saddr, sizeof(flow.saddr));
		__builtin_memcpy(flow.daddr, e.daddr, sizeof(flow.daddr));
		flow.af = e.af;
		flow.sport = e.sport;
		flow.dport = e.dport;
		bump(&flows, &flow);
		return 0;
	}
	e.ts_us = bpf_ktime_get_ns() / 1000;
	e.pid = id >> 32;
	e.uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e.task, sizeof(e.task));
	submit_event(&e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
