// SPDX-License-Identifier: GPL-2.0
/* Three tp_btf programs, as a probe written for a recent kernel would have them: one on a
 * tracepoint older kernels lack, one using cgroup storage (helper bpf_cgrp_storage_get and
 * map type BPF_MAP_TYPE_CGRP_STORAGE, both 6.2), and a plain one. It loads on a recent
 * kernel; pybpf check must say where it fails on an older one. A test object of the
 * pre-check (built by tests/test_check.py, which picks CHECK_TP_NEW from the kernels' BTFs). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#ifndef CHECK_TP_NEW
#define CHECK_TP_NEW sched_prepare_exec
#endif
#define CHECK_STR(x) #x
#define CHECK_SEC(x) "tp_btf/" CHECK_STR(x)

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cgrp_seen SEC(".maps");

__u64 new_hits, plain_hits;

SEC(CHECK_SEC(CHECK_TP_NEW))
int BPF_PROG(on_new_tracepoint)
{
	new_hits++;
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count_per_cgroup, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 *n;

	n = bpf_cgrp_storage_get(&cgrp_seen, task->cgroups->dfl_cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(plain, struct task_struct *parent, struct task_struct *child)
{
	plain_hits++;
	return 0;
}
