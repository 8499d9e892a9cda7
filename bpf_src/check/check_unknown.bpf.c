// SPDX-License-Identifier: GPL-2.0
/* Attach points BTF cannot vouch for: a syscall tracepoint of no syscall and a kprobe on a
 * function no BTF lists. pybpf check says "unknown" (exit 0), and --strict counts that as
 * failing. A test object of the pre-check (built by tests/test_check.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_pybpf_no_such_call")
int no_such_syscall(void *ctx)
{
	return 0;
}

SEC("kprobe/pybpf_no_such_function")
int no_such_function(void *ctx)
{
	return 0;
}
