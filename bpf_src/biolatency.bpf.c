// SPDX-License-Identifier: GPL-2.0
/* biolatency for pybpf: block I/O latency as log2 histograms (pybpf.tools.biolatency),
 * from tp_btf/block_rq_{insert,issue,complete}, as libbpf-tools' biolatency: a request
 * is stamped at issue (or at insert with -Q, the OS queue time included) and counted
 * at completion in the histogram of its key (disk with -D, cmd_flags with -F).
 * For `pybpf export`: the same map, and `io_ns_sum` for the histogram's _sum.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tools_common.h"
#include "tools_filter.h"

#define MAX_SLOTS 27
#define MINORBITS 20
#define MKDEV(ma, mi) (((ma) << MINORBITS) | (mi))

const volatile bool targ_per_disk = false;
const volatile bool targ_per_flag = false;
const volatile bool targ_queued = false;
const volatile bool targ_ms = false;
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;

struct hist_key {
	__u32 cmd_flags;
	__u32 dev;
};

struct hist {
	__u32 slots[MAX_SLOTS];
};

static const struct hist zero_hist;
__u64 io_ns_sum = 0;

/* every event, whatever the key: what `pybpf export biolatency` serves (a live numpy view) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} total_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct request *);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

static __always_inline __u32 disk_dev(struct request *rq)
{
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);

	return disk ? MKDEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor)) : 0;
}

static __always_inline int rq_start(struct request *rq, bool issue)
{
	__u64 ts;

	if (!cgroup_allowed())
		return 0;
	if (issue && targ_queued && BPF_CORE_READ(rq, q, elevator))
		return 0;
	if (filter_dev && disk_dev(rq) != targ_dev)
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &rq, &ts, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(on_insert, struct request *rq)
{
	return rq_start(rq, false);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(on_issue, struct request *rq)
{
	return rq_start(rq, true);
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(on_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 slot, *tsp, ts = bpf_ktime_get_ns();
	struct hist_key key = {};
	struct hist *h;
	__s64 delta;

	if (!cgroup_allowed())
		return 0;
	tsp = bpf_map_lookup_elem(&start, &rq);
	if (!tsp)
		return 0;
	delta = (__s64)(ts - *tsp);
	if (delta < 0)
		goto cleanup;
	if (targ_per_disk)
		key.dev = disk_dev(rq);
	if (targ_per_flag)
		key.cmd_flags = BPF_CORE_READ(rq, cmd_flags);
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			goto cleanup;
	}
	__sync_fetch_and_add(&io_ns_sum, delta);
	delta /= targ_ms ? 1000000U : 1000U;
	slot = log2_u64(delta);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	{
		__u32 idx = slot;
		__u64 *total = bpf_map_lookup_elem(&total_slots, &idx);

		if (total)
			__sync_fetch_and_add(total, 1);
	}
	__sync_fetch_and_add(&h->slots[slot], 1);
cleanup:
	bpf_map_delete_elem(&start, &rq);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
