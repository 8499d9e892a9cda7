// SPDX-License-Identifier: GPL-2.0
/* Event producers for pybpf's ring buffer and perf buffer readers.
 *
 * On every getppid(2) of the process `want_tgid`, `emit_on_getppid` emits
 * `per_call` sequence-numbered records (bpf_loop) into the ring buffer
 * `events`; a record that does not fit is counted in `dropped`, so a test can
 * check dropped + read == produced. Optional extras, each switched on from
 * .rodata before load: every `discard_every`-th record is reserved and then
 * discarded; variable-size records (1..VAR_MAX bytes, byte j = seq + j) go to
 * `varlen`; a copy of each record goes to the perf buffer `perf_events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define VAR_MAX 61

struct event {
	__u64 seq;
	__u32 tgid;
	__u32 pid;
	char comm[16];
};

/* Puts `struct event` into the object's BTF, so readers can ask for it by name. */
struct event *unused_event_type __attribute__((unused));

const volatile __u32 want_tgid = 0;
const volatile __u32 per_call = 1;
const volatile __u32 discard_every = 0;   /* 0: never discard */
const volatile __u8 emit_events = 1;
const volatile __u8 emit_varlen = 0;
const volatile __u8 emit_perf = 0;

__u64 next_seq = 0;      /* sequence numbers handed out */
__u64 produced = 0;      /* records submitted to `events` */
__u64 dropped = 0;       /* records that found `events` full */
__u64 discarded = 0;     /* records reserved, then discarded */
__u64 var_produced = 0;
__u64 var_dropped = 0;
__u64 perf_failed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} varlen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct loop_ctx {
	void *tp_ctx;
	__u64 pid_tgid;
	char comm[16];
};

static __always_inline void emit_var(__u64 seq)
{
	__u8 buf[VAR_MAX + 3] = {};
	__u32 len = (seq % VAR_MAX) + 1;

	for (int j = 0; j < VAR_MAX; j++)
		buf[j] = (__u8)(seq + j);
	barrier_var(len);  /* keep the bound below: the verifier cannot see through % */
	if (bpf_ringbuf_output(&varlen, buf, len & 63, 0))
		__sync_fetch_and_add(&var_dropped, 1);
	else
		__sync_fetch_and_add(&var_produced, 1);
}

static long emit_one(__u32 index, void *data)
{
	struct loop_ctx *lc = data;
	struct event *e;
	__u64 seq = __sync_fetch_and_add(&next_seq, 1);

	if (emit_varlen)
		emit_var(seq);
	if (!emit_events)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->seq = seq;
	e->tgid = lc->pid_tgid >> 32;
	e->pid = (__u32)lc->pid_tgid;
	__builtin_memcpy(e->comm, lc->comm, sizeof(e->comm));
	if (emit_perf && bpf_perf_event_output(lc->tp_ctx, &perf_events, BPF_F_CURRENT_CPU, e, sizeof(*e)))
		__sync_fetch_and_add(&perf_failed, 1);
	if (discard_every && seq % discard_every == 0) {
		bpf_ringbuf_discard(e, 0);
		__sync_fetch_and_add(&discarded, 1);
		return 0;
	}
	bpf_ringbuf_submit(e, 0);
	__sync_fetch_and_add(&produced, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int emit_on_getppid(void *ctx)
{
	struct loop_ctx lc = { .tp_ctx = ctx };

	lc.pid_tgid = bpf_get_current_pid_tgid();
	if ((lc.pid_tgid >> 32) != want_tgid)
		return 0;
	bpf_get_current_comm(lc.comm, sizeof(lc.comm));
	bpf_loop(per_call, emit_one, &lc, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
