// SPDX-License-Identifier: GPL-2.0
/* Stacks carried in ring buffer records (tests/test_flame.py): a perf_event program copies the
 * sampled thread's user stack with bpf_get_stack() into a record, instead of a stack map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define DEPTH 32

const volatile __u32 targ_tgid = 0;

struct stack_sample {
	__u32 pid;
	__s32 ulen;            /* bytes bpf_get_stack() wrote, or its error */
	__u64 ips[DEPTH];
};

struct stack_sample *unused_stack_sample __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} samples SEC(".maps");

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_sample *s;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s)
		return 0;
	__builtin_memset(s->ips, 0, sizeof(s->ips));
	s->pid = tgid;
	s->ulen = bpf_get_stack(ctx, s->ips, sizeof(s->ips), BPF_F_USER_STACK);
	bpf_ringbuf_submit(s, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
