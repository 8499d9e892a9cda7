// SPDX-License-Identifier: GPL-2.0
/* Reads a field no kernel has, without a guard: libbpf poisons the instruction, the
 * verifier rejects it, and pybpf's CoreRelocationError names the field. (A test object of
 * the CO-RE check, built by tests/test_core.py, not bundled.) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct___pybpf {
	long pybpf_no_such_field;
} __attribute__((preserve_access_index));

__u64 value_seen;

SEC("tp/syscalls/sys_enter_getppid")
int read_missing(void *ctx)
{
	struct task_struct___pybpf *t = (void *)bpf_get_current_task();

	value_seen = BPF_CORE_READ(t, pybpf_no_such_field);
	return 0;
}
