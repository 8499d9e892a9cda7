/* Test object for pybpf.spec: many program types, map kinds, globals, CO-RE. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct pair_key { __u32 pid; __u16 port; __u8 proto; };
struct pair_val { __u64 count; char comm[16]; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct pair_key);
	__type(value, struct pair_val);
} pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u64);
	__type(value, __u32);
} pinned SEC(".maps");

const volatile __u32 want_tgid = 0;
const volatile char banner[8] = "hello";
__u64 hits = 0;
__u32 seen[4];
int counter = 42;
struct pair_val last_val = { .count = 7, .comm = "init" };
__u64 custom_var SEC(".data.custom") = 0x1122334455667788ULL;

enum demo_color { RED, GREEN = 5, BLUE };

static __noinline int helper_sub(int x)
{
	return x * 2 + counter;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
	if (want_tgid && ppid != want_tgid)
		return 0;
	__sync_fetch_and_add(&hits, 1);
	if (bpf_core_field_exists(task->pid))
		seen[0] = ppid;
	if (bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF))
		seen[1] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	return helper_sub(ppid);
}

SEC("raw_tp/sys_enter")
int on_raw(void *ctx) { hits++; return 0; }

SEC("xdp")
int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }

SEC("xdp")
int xdp_drop(struct xdp_md *ctx) { return XDP_DROP; }

SEC("socket")
int sock_filter(struct __sk_buff *skb) { return skb->len; }

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx) { return 0; }

SEC("tc")
int tc_prog(struct __sk_buff *skb) { return 0; }

SEC("cgroup_skb/ingress")
int cg_ingress(struct __sk_buff *skb) { return 1; }

SEC("fentry/do_nanosleep")
int BPF_PROG(on_nanosleep) { return 0; }

SEC("uprobe")
int on_uprobe(void *ctx) { return 0; }

SEC("perf_event")
int on_perf(void *ctx) { return 0; }
