// SPDX-License-Identifier: GPL-2.0
/* tcpstates for pybpf: TCP state changes with the time spent in the old state
 * (pybpf.tools.tcpstates), from the sock:inet_sock_set_state tracepoint.
 *
 * Port filters are hash maps user space fills after load, as libbpf-tools' do.
 * For `pybpf export`: `transitions` counts (oldstate, newstate) pairs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools_events.h"

#define TASK_COMM_LEN 16
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

const volatile bool filter_by_sport = false;
const volatile bool filter_by_dport = false;
const volatile short target_family = 0;

struct tcp_event {
	__u64 skaddr;
	__u64 ts_us;
	__u64 delta_us;
	__u32 pid;
	__s32 oldstate;
	__s32 newstate;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 pad;
	char comm[TASK_COMM_LEN];
	__u8 saddr[16];
	__u8 daddr[16];
};

struct transition {
	__s32 oldstate;
	__s32 newstate;
};

struct tcp_event *unused_tcp_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u16);
} sports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u16);
} dports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} timestamps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct transition);
	__type(value, __u64);
} transitions SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int on_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct transition tr = {};
	struct tcp_event *e;
	__u64 skaddr = (__u64)ctx->skaddr;
	__u16 family = ctx->family, sport = ctx->sport, dport = ctx->dport;
	__u64 ts, *start, one = 1, *count;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (target_family && target_family != family)
		return 0;
	if (filter_by_sport && !bpf_map_lookup_elem(&sports, &sport))
		return 0;
	if (filter_by_dport && !bpf_map_lookup_elem(&dports, &dport))
		return 0;

	tr.oldstate = ctx->oldstate;
	tr.newstate = ctx->newstate;
	count = bpf_map_lookup_elem(&transitions, &tr);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&transitions, &tr, &one, BPF_NOEXIST);

	ts = bpf_ktime_get_ns();
	e = reserve_event(sizeof(*e));
	if (!e)
		goto stamp;
	start = bpf_map_lookup_elem(&timestamps, &skaddr);
	e->delta_us = start ? (ts - *start) / 1000 : 0;
	e->skaddr = skaddr;
	e->ts_us = ts / 1000;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->oldstate = ctx->oldstate;
	e->newstate = ctx->newstate;
	e->family = family;
	e->sport = sport;
	e->dport = dport;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (family == AF_INET) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	bpf_ringbuf_submit(e, 0);
stamp:
	if (ctx->newstate == TCP_CLOSE)
		bpf_map_delete_elem(&timestamps, &skaddr);
	else
		bpf_map_update_elem(&timestamps, &skaddr, &ts, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
