// SPDX-License-Identifier: GPL-2.0
/* exitsnoop for pybpf: one ring buffer record per process (or thread) exit
 * (pybpf.tools.exitsnoop), from the sched:sched_process_exit tracepoint, with the
 * fields of libbpf-tools' exitsnoop. For `pybpf export`: `exits` by (comm, exit
 * signal, exit code) and `lost_events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools_events.h"
#include "tools_filter.h"

const volatile __u32 target_pid = 0;
const volatile bool trace_failed_only = false;
const volatile bool trace_by_process = true;

struct exit_event {
	__u64 start_time;
	__u64 exit_time;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__s32 sig;
	__s32 exit_code;
	char comm[16];
};

struct exit_key {
	char comm[16];
	__s32 sig;
	__s32 exit_code;
};

struct exit_event *unused_exit_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct exit_key);
	__type(value, __u64);
} exits SEC(".maps");

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct task_struct *task;
	struct exit_key key = {};
	struct exit_event *e;
	__u64 one = 1, *count;
	int exit_code;

	if (!cgroup_allowed())
		return 0;
	if (target_pid && target_pid != pid)
		return 0;
	if (trace_by_process && pid != tid)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	exit_code = BPF_CORE_READ(task, exit_code);
	if (trace_failed_only && exit_code == 0)
		return 0;

	bpf_get_current_comm(key.comm, sizeof(key.comm));
	key.sig = exit_code & 0xff;
	key.exit_code = exit_code >> 8;
	count = bpf_map_lookup_elem(&exits, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&exits, &key, &one, BPF_NOEXIST);

	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	e->start_time = BPF_CORE_READ(task, start_time);
	e->exit_time = bpf_ktime_get_ns();
	e->pid = pid;
	e->tid = tid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->sig = key.sig;
	e->exit_code = key.exit_code;
	__builtin_memcpy(e->comm, key.comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
