// SPDX-License-Identifier: GPL-2.0
/* Fills a ring buffer with fixed-size records for benchmarks/ringbuf_bench.py.
 *
 * `fill` is a SEC("syscall") program run through BPF_PROG_TEST_RUN: its
 * context says how many records of 32 or 64 bytes to write (bpf_loop), so the
 * benchmark fills the ring in one call and then times only the draining.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct rec32 {
	__u64 seq;
	__u64 a, b, c;
};

struct rec64 {
	__u64 seq;
	__u64 v[7];
};

struct fill_args {
	__u32 count;
	__u32 size;       /* 32 or 64 */
};

/* Put the record types into the object's BTF, so readers can ask for them by name. */
struct rec32 *unused_rec32 __attribute__((unused));
struct rec64 *unused_rec64 __attribute__((unused));

__u64 written = 0;
__u64 full = 0;
__u64 next_seq = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);
} bench SEC(".maps");

static long put32(__u32 index, void *data)
{
	struct rec32 *r = bpf_ringbuf_reserve(&bench, sizeof(*r), 0);

	if (!r) {
		full++;
		return 1;
	}
	r->seq = next_seq++;
	r->a = index;
	r->b = 0;
	r->c = 0;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	written++;
	return 0;
}

static long put64(__u32 index, void *data)
{
	struct rec64 *r = bpf_ringbuf_reserve(&bench, sizeof(*r), 0);

	if (!r) {
		full++;
		return 1;
	}
	r->seq = next_seq++;
	for (int i = 0; i < 7; i++)
		r->v[i] = index;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	written++;
	return 0;
}

SEC("syscall")
int fill(struct fill_args *args)
{
	__u32 count = args->count;

	if (args->size == 64)
		bpf_loop(count, put64, NULL, 0);
	else
		bpf_loop(count, put32, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
