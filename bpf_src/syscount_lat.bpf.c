// SPDX-License-Identifier: GPL-2.0
/* syscount for pybpf: system call counts and latencies (pybpf.tools.syscount).
 *
 * Not the demo's syscount.bpf.c (a plain mmapable counter array): this one
 * keeps, per syscall number (or per process), a count and the total time spent
 * in the call, in a per-CPU hash map that user space sums over CPUs.
 * Options follow libbpf-tools' syscount: pid filter, failures only, one errno.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tools_filter.h"

#define TASK_COMM_LEN 16

const volatile bool measure_latency = true;
const volatile bool count_by_process = false;
const volatile bool filter_failed = false;
const volatile int filter_errno = 0;
const volatile __u32 filter_pid = 0;

struct syscall_stat {
	__u64 count;
	__u64 total_ns;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct syscall_stat);
} data SEC(".maps");

static const struct syscall_stat zero;

SEC("tracepoint/raw_syscalls/sys_enter")
int on_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 ts;

	if (!cgroup_allowed())
		return 0;
	if (filter_pid && (id >> 32) != filter_pid)
		return 0;
	if (!measure_latency)
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int on_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u32 pid = id >> 32;
	struct syscall_stat *stat;
	__u64 *start_ts, lat = 0;
	__u32 key;
	long ret = ctx->ret;

	if (!cgroup_allowed())
		return 0;
	if (filter_pid && pid != filter_pid)
		return 0;
	if (ctx->id < 0)
		return 0;
	if (filter_failed && ret >= 0)
		return 0;
	if (filter_errno && ret != -filter_errno)
		return 0;
	if (measure_latency) {
		start_ts = bpf_map_lookup_elem(&start, &tid);
		if (!start_ts)
			return 0;
		lat = bpf_ktime_get_ns() - *start_ts;
		bpf_map_delete_elem(&start, &tid);
	}
	key = count_by_process ? pid : (__u32)ctx->id;
	stat = bpf_map_lookup_elem(&data, &key);
	if (!stat) {
		bpf_map_update_elem(&data, &key, &zero, BPF_NOEXIST);
		stat = bpf_map_lookup_elem(&data, &key);
		if (!stat)
			return 0;
		if (count_by_process)
			bpf_get_current_comm(stat->comm, sizeof(stat->comm));
	}
	stat->count++;          /* per-CPU value: no atomics needed */
	stat->total_ns += lat;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
