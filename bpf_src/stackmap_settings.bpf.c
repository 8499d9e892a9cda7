// SPDX-License-Identifier: GPL-2.0
/* A stack trace map declared the way bcc's libbpf-tools declare theirs (profile,
 * offcputime, wakeuptime...): key only, no value size and no max_entries, which
 * the C tool sets before load (value_size = depth * 8). Loads only with
 * `pybpf load --value-size stackmap=N --max-entries stackmap=M`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 want_tgid = 0;

__s64 last_stackid = -1;
__u64 hits = 0;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__type(key, __u32);
} stackmap SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(struct trace_event_raw_sys_enter *ctx)
{
	if (want_tgid && (bpf_get_current_pid_tgid() >> 32) != want_tgid)
		return 0;
	last_stackid = bpf_get_stackid(ctx, &stackmap, BPF_F_USER_STACK);
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
