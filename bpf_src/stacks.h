/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by the stack tools' BPF side (profile, offcputime, wakeuptime): the keys their
 * counts maps use, as libbpf-tools lay them out, and the stack map every tool sizes from
 * user space (value_size = depth * 8, max_entries = --stack-storage-size) before load. */
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

#endif
