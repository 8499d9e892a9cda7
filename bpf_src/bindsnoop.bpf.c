// SPDX-License-Identifier: GPL-2.0
/* bindsnoop for pybpf: bind() of IPv4/IPv6 sockets (pybpf.tools.bindsnoop), on tracepoints.
 *
 * libbpf-tools' bindsnoop kprobes inet_bind/inet6_bind, which kernels without kprobes
 * (this one) refuse. Here sys_enter_bind keeps the fd by thread id, and sys_exit_bind
 * finds the socket through the task's fd table (files->fdt->fd[fd]->private_data) and
 * reports what the C tool reports: port, address, protocol, the socket options
 * (F freebind, T transparent, N bind-address-no-port, R reuseaddr, r reuseport),
 * bound device and result. Options are read from inet_flags (6.6+) or the older
 * bitfields, whichever the kernel has (CO-RE). `binds` counts by (protocol, port).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tools_events.h"
#include "tools_filter.h"

#define AF_INET 2
#define AF_INET6 10
#define MAX_PORTS 1024

const volatile __u32 target_pid = 0;
const volatile bool ignore_errors = true;
const volatile bool filter_by_port = false;

struct bind_event {
	__u8 addr[16];
	__u64 ts_us;
	__u32 pid;
	__u32 bound_dev_if;
	__s32 ret;
	__u16 port;
	__u16 proto;
	__u8 opts;
	__u8 ver;
	__u8 pad[6];
	char task[16];
};

struct bind_key {
	__u32 proto;
	__u32 port;
};

struct inet_sock___old {
	__u8 freebind: 1;
	__u8 transparent: 1;
	__u8 bind_address_no_port: 1;
} __attribute__((preserve_access_index));

struct bind_event *unused_bind_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __s32);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u16);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct bind_key);
	__type(value, __u64);
} binds SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_bind")
int on_bind_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__s32 fd = (__s32)ctx->args[0];

	if (!cgroup_allowed())
		return 0;
	if (target_pid && (id >> 32) != target_pid)
		return 0;
	bpf_map_update_elem(&pending, &tid, &fd, BPF_ANY);
	return 0;
}

static __always_inline __u8 socket_options(struct sock *sk)
{
	struct inet_sock *inet = (struct inet_sock *)sk;
	__u8 opts = 0;

	if (bpf_core_field_exists(inet->inet_flags)) {
		unsigned long flags = BPF_CORE_READ(inet, inet_flags);

		opts |= (flags >> 11) & 1;          /* INET_FLAGS_FREEBIND */
		opts |= ((flags >> 15) & 1) << 1;   /* INET_FLAGS_TRANSPARENT */
		opts |= ((flags >> 18) & 1) << 2;   /* INET_FLAGS_BIND_ADDRESS_NO_PORT */
	} else {
		struct inet_sock___old *old = (void *)sk;

		opts |= BPF_CORE_READ_BITFIELD_PROBED(old, freebind);
		opts |= BPF_CORE_READ_BITFIELD_PROBED(old, transparent) << 1;
		opts |= BPF_CORE_READ_BITFIELD_PROBED(old, bind_address_no_port) << 2;
	}
	opts |= (BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse) & 1) << 3;   /* as the C tool: its low bit */
	opts |= BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport) << 4;
	return opts;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int on_bind_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct bind_event e = {};
	struct bind_key key = {};
	struct file **fds, *file;
	struct socket *socket;
	struct sock *sk;
	__s32 *fdp, fd;
	__u16 family;
	int ret = ctx->ret;

	fdp = bpf_map_lookup_elem(&pending, &tid);
	if (!fdp)
		return 0;
	fd = *fdp;
	bpf_map_delete_elem(&pending, &tid);
	if (ignore_errors && ret != 0)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (fd < 0 || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd & 0xffff]) || !file)
		return 0;
	socket = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(socket, sk);
	if (!sk)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;   /* inet_bind/inet6_bind only, as the C tool */
	e.port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (filter_by_port && !bpf_map_lookup_elem(&ports, &e.port))
		return 0;
	e.opts = socket_options(sk);
	e.ts_us = bpf_ktime_get_ns() / 1000;
	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.bound_dev_if = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	e.ret = ret;
	e.proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	bpf_get_current_comm(e.task, sizeof(e.task));
	if (family == AF_INET) {
		e.ver = 4;
		bpf_core_read(e.addr, 4, &((struct inet_sock *)sk)->inet_saddr);   /* 4 bytes, the rest 0 */
	} else {
		e.ver = 6;
		BPF_CORE_READ_INTO(&e.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
	}
	key.proto = e.proto;
	key.port = e.port;
	{
		__u64 one = 1, *count = bpf_map_lookup_elem(&binds, &key);

		if (count)
			__sync_fetch_and_add(count, 1);
		else
			bpf_map_update_elem(&binds, &key, &one, BPF_NOEXIST);
	}
	submit_event(&e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
