// SPDX-License-Identifier: GPL-2.0
/* A helper call behind a guard: bpf_cgrp_storage_get only where enum bpf_func_id has it,
 * the way CO-RE objects support older kernels. The helper finding is fine on every kernel
 * (the call is dead code where the helper is missing); the map type still needs 6.2.
 * A test object of the pre-check (built by tests/test_check.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cgrp_seen SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(maybe_per_cgroup, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_cgrp_storage_get))
		bpf_cgrp_storage_get(&cgrp_seen, task->cgroups->dfl_cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}
