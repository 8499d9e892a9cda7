/* SPDX-License-Identifier: GPL-2.0 */
/* The event side of pybpf's snoop tools (pybpf/tools/, run by pybpf.tools._common.EventTool).
 *
 * Include after vmlinux.h and bpf_helpers.h. Gives:
 *  - `events`, the ring buffer user space reads (user space sizes it before load so that a
 *    burst the C twin's perf buffers survive is survived here too);
 *  - `lost_events`, a per-CPU count of records the ring had no room for: the tool prints
 *    "Lost N events on CPU #C!" as libbpf-tools do, and `pybpf export` counts it;
 *  - submit_event(): copy a record (or its first `size` bytes: variable-size records, as
 *    libbpf-tools' execsnoop sends) into the ring, counting a loss when it is full.
 */
#ifndef PYBPF_TOOLS_EVENTS_H
#define PYBPF_TOOLS_EVENTS_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

static __always_inline void count_lost_event(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);

	if (lost)
		*lost += 1;   /* per CPU, and a program runs on one CPU at a time: no atomic */
}

/* bpf_ringbuf_output with the loss counted; `size` must be known to the verifier to fit. */
static __always_inline int submit_event(void *record, __u64 size)
{
	int err = bpf_ringbuf_output(&events, record, size, 0);

	if (err)
		count_lost_event();
	return err;
}

/* bpf_ringbuf_reserve with the loss counted (NULL: counted, nothing to fill). */
static __always_inline void *reserve_event(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		count_lost_event();
	return e;
}

/* A (comm, errno) counter for `pybpf export`: what execsnoop and opensnoop both keep. */
struct comm_errno_key {
	char comm[16];
	__s32 errno_;   /* 0, or the positive errno of a failed call */
};

static __always_inline void count_comm_errno(void *map, const char *comm, int ret)
{
	struct comm_errno_key key = {};
	__u64 one = 1, *count;

	__builtin_memcpy(key.comm, comm, sizeof(key.comm));
	key.errno_ = ret < 0 ? -ret : 0;
	count = bpf_map_lookup_elem(map, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

#endif
