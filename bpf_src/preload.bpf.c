// SPDX-License-Identifier: GPL-2.0
/* What real tools set up before load: a stack trace map sized from user space,
 * a tp_btf program whose target is set with set_attach_target, __kconfig
 * externs (libbpf's .kconfig map), a bool knob in .rodata, and a uretprobe
 * whose SEC() names a function but no binary (not auto-attachable).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

extern int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern unsigned long CONFIG_HZ __kconfig __weak;

const volatile bool verbose = false;

__u64 switches = 0;
__u64 kernel_version = 0;
__u64 bpf_syscall = 0;
__u64 hz = 0;
__u64 readlines = 0;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
	__uint(max_entries, 64);
} stackmap SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch)
{
	__sync_fetch_and_add(&switches, 1);
	kernel_version = LINUX_KERNEL_VERSION;
	bpf_syscall = CONFIG_BPF_SYSCALL;
	hz = CONFIG_HZ;
	if (verbose)
		bpf_get_stackid(ctx, &stackmap, 0);
	return 0;
}

SEC("uretprobe/readline")
int BPF_KRETPROBE(on_readline)
{
	__sync_fetch_and_add(&readlines, 1);
	return 0;
}


/* a field no kernel has: its guarded read is poisoned by libbpf ("w/ invalid insn"), as in bcc's mdflush */
struct task_struct___gone {
	int no_such_field;
} __attribute__((preserve_access_index));

/* "?": not loaded unless asked (autoload); the kernel has no such function */
SEC("?fentry/dummy_file_read")
int BPF_PROG(on_missing_target)
{
	struct task_struct___gone *task = (void *)bpf_get_current_task();

	if (bpf_core_field_exists(task->no_such_field))
		return BPF_CORE_READ(task, no_such_field);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
