// SPDX-License-Identifier: GPL-2.0
/* Every CO-RE relocation kind, for the offline check's agreement test (pybpf check):
 * ___flavor structs, bitfields, arrays (also flexible and of structs), enum values,
 * field/type existence, type matches (clang >= 15), type ids, type and field sizes,
 * signedness, direct loads whose offset and width libbpf patches.
 * A test object (built by tests/test_core.py with clang >= 15, not bundled). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* A field renamed in 5.14: task_struct.state became __state. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

/* kernfs_node.parent became __parent in 6.15. */
struct kernfs_node___old {
	struct kernfs_node___old *parent;
	const char *name;
} __attribute__((preserve_access_index));

struct kernfs_node___new {
	struct kernfs_node___new *__parent;
	const char *name;
} __attribute__((preserve_access_index));

/* A type no kernel has. */
struct pybpf_no_such_type {
	int x;
} __attribute__((preserve_access_index));

/* A local enum flavor: the enumerator names match modulo ___suffix. */
enum bpf_map_type___local {
	BPF_MAP_TYPE_RINGBUF___local = 1,
	BPF_MAP_TYPE_ARENA___local = 2,
	BPF_MAP_TYPE_NO_SUCH___local = 3,
};

__u64 out[48];

SEC("tp/syscalls/sys_enter_getppid")
int flavors(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct task_struct___old *old = (void *)t;
	struct kernfs_node *kn = 0;

	if (bpf_core_field_exists(old->state))
		out[0] = BPF_CORE_READ(old, state);
	else
		out[0] = BPF_CORE_READ(t, __state);
	out[1] = bpf_core_field_exists(((struct kernfs_node___old *)kn)->parent);
	out[2] = bpf_core_field_exists(((struct kernfs_node___new *)kn)->__parent);
	if (bpf_core_field_exists(((struct kernfs_node___new *)kn)->__parent))
		out[3] = bpf_core_field_offset(((struct kernfs_node___new *)kn)->__parent);
	out[4] = bpf_core_field_offset(((struct kernfs_node___old *)kn)->name);
	out[5] = bpf_core_field_exists(t->in_execve);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int bitfields(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	out[6] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);
	out[7] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_remote_wakeup);
	out[8] = bpf_core_field_size(t->sched_migrated);
	out[9] = __builtin_preserve_field_info(t->sched_task_hot, BPF_FIELD_SIGNED);
	out[10] = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);
	out[11] = __builtin_preserve_field_info(t->flags, BPF_FIELD_SIGNED);
	out[12] = __builtin_preserve_field_info(t->in_execve, BPF_FIELD_LSHIFT_U64);
	out[13] = __builtin_preserve_field_info(t->in_execve, BPF_FIELD_RSHIFT_U64);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int arrays(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	char c = 0;

	bpf_core_read(&c, 1, &t->comm[3]);
	out[14] = c;
	out[15] = bpf_core_field_size(t->comm);
	out[16] = BPF_CORE_READ(t, signal, rlim[7].rlim_cur);	/* RLIMIT_NOFILE */
	out[17] = bpf_core_field_offset(t->signal->rlim[3]);
	out[18] = bpf_core_field_size(t->mm->saved_auxv);
	out[19] = bpf_core_field_offset(t->mm->saved_auxv[2]);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int enums(void *ctx)
{
	out[20] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_ARENA);
	if (bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_ARENA))
		out[21] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_ARENA);
	out[22] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[23] = bpf_core_enum_value_exists(enum bpf_map_type___local, BPF_MAP_TYPE_NO_SUCH___local);
	out[24] = bpf_core_enum_value(enum bpf_map_type___local, BPF_MAP_TYPE_RINGBUF___local);
	out[25] = bpf_core_enum_value_exists(enum bpf_map_type___local, BPF_MAP_TYPE_ARENA___local);
	out[26] = bpf_core_enum_value(enum bpf_func_id, BPF_FUNC_get_current_task);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int types(void *ctx)
{
	out[27] = bpf_core_type_exists(struct kernfs_node___old);
	out[28] = bpf_core_type_exists(struct pybpf_no_such_type);
	out[29] = bpf_core_type_size(struct task_struct);
	out[30] = bpf_core_type_size(struct kernfs_node);
	out[31] = bpf_core_type_id_kernel(struct task_struct);
	out[32] = bpf_core_type_id_local(struct task_struct);
	out[33] = bpf_core_type_id_kernel(struct pybpf_no_such_type);
	out[34] = bpf_core_type_matches(struct kernfs_node___old);
	out[35] = bpf_core_type_matches(struct kernfs_node___new);
	out[36] = bpf_core_type_matches(struct list_head);
	out[37] = bpf_core_type_matches(struct task_struct);
	out[38] = bpf_core_type_matches(enum bpf_map_type___local);
	out[39] = bpf_core_type_matches(pid_t);
	out[40] = bpf_core_type_exists(union bpf_attr);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(direct, struct task_struct *parent, struct task_struct *child)
{
	out[41] = parent->pid;
	out[42] = child->tgid;
	out[43] = BPF_CORE_READ_BITFIELD(child, sched_reset_on_fork);
	out[44] = parent->start_time;
	out[45] = child->real_parent->flags;
	return 0;
}
