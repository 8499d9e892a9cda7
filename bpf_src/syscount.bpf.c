// SPDX-License-Identifier: GPL-2.0
/* Counts every system call by number, for `pybpf demo`.
 *
 * The counts live in a BPF_F_MMAPABLE array, so user space reads them as a
 * numpy view without a single syscall.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SYSCALLS 512

const volatile __u32 skip_tgid = 0;   /* the reader itself, if it wants */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 total = 0;
__u64 out_of_range = 0;

SEC("tracepoint/raw_syscalls/sys_enter")
int count_syscalls(struct trace_event_raw_sys_enter *ctx)
{
	__u32 id = ctx->id;
	__u64 *value;

	if (skip_tgid && (bpf_get_current_pid_tgid() >> 32) == skip_tgid)
		return 0;
	__sync_fetch_and_add(&total, 1);
	value = bpf_map_lookup_elem(&counts, &id);
	if (value)
		__sync_fetch_and_add(value, 1);
	else
		__sync_fetch_and_add(&out_of_range, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
