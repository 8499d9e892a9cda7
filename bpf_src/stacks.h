/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by the stack tools' BPF side (profile, offcputime, wakeuptime): the stack map every
 * tool sizes from user space (value_size = depth * 8, max_entries = --stack-storage-size)
 * before load, the pid/tid filters, and what `pybpf export` counts.
 *
 * The tools count by stack id, as libbpf-tools do, and name the stacks once at the end. The
 * exporter names its labels at every scrape from the key alone (the kstack/ustack decoders),
 * so with `export_stacks` set the programs count by the frames themselves instead: the
 * EXPORT_STACK_DEPTH innermost frames copied into the key by bpf_get_stack(), zero-padded
 * (one series per distinct stack; the config bounds their number with max_series). */
#ifndef PYBPF_STACKS_H
#define PYBPF_STACKS_H

#define TASK_COMM_LEN 16
#define MAX_PID_NR 30
#define MAX_TID_NR 30
#define PERF_MAX_STACK_DEPTH 127
#define PF_KTHREAD 0x00200000

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, 1024);
} stackmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, MAX_PID_NR);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, MAX_TID_NR);
} tids SEC(".maps");

/* Frames kept per stack in an exporter key: a key is at most 512 bytes (a BPF stack). */
#define EXPORT_STACK_DEPTH 24

const volatile bool export_stacks = false;

/* A user stack as the ustack decoder reads it: the process, then its addresses. */
struct user_stack {
	__u32 pid;
	__u64 addrs[EXPORT_STACK_DEPTH];
};

__u64 dropped = 0;   /* counts lost to a full counts map (the tools warn, the exporter counts) */

/* *map[key] += delta, making the entry when it is new; a full map counts in `dropped`. */
static __always_inline void add_count(void *map, const void *key, __u64 delta)
{
	static const __u64 zero;
	__u64 *count = bpf_map_lookup_elem(map, key);

	if (!count) {
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);   /* may race another CPU: fine */
		count = bpf_map_lookup_elem(map, key);
		if (!count) {
			__sync_fetch_and_add(&dropped, 1);
			return;
		}
	}
	__sync_fetch_and_add(count, delta);
}

#endif
