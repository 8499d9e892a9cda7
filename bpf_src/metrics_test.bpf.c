// SPDX-License-Identifier: GPL-2.0
/* Maps of every shape pybpf.metrics reads, for tests/test_metrics_shapes.py: filled from
 * user space, so the expected metrics are known exactly. The one program is never attached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct cpu_slot {
	__u32 cpu;
	__u32 slot;
};

struct flow {
	__u8 saddr[16];
	__u16 family;
	__u16 pad;
	__u32 errno_;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cpu_slot);
	__type(value, __u64);
} lat_by_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} plain SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct flow);
	__type(value, __u64);
} flows SEC(".maps");

__u64 hits = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int never_attached(void *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
