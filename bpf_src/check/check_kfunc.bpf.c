// SPDX-License-Identifier: GPL-2.0
/* kfuncs newer than the kernels Debian ships (bpf_strlen, bpf_strchr: 6.17): one called
 * unconditionally (a strong extern: libbpf refuses to load the object where the kernel
 * lacks it), in the object check_kfunc; the weak variant (CHECK_KFUNC_WEAK) has one call
 * guarded by a ksym-exists test (fine everywhere) and one not (fails where it is missing).
 * A test object of the pre-check (built by tests/test_check.py). */
#define BPF_NO_KFUNC_PROTOTYPES /* vmlinux.h declares every kfunc __weak: this object declares its own */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#ifdef CHECK_KFUNC_WEAK
extern int bpf_strlen(const char *s__ign) __ksym __weak;
extern int bpf_strchr(const char *s__ign, char c) __ksym __weak;
#else
extern int bpf_strlen(const char *s__ign) __ksym;
#endif

const char word[8] = "pybpf";
int length = -1, where = -1;

SEC("tp_btf/sched_process_fork")
int BPF_PROG(measure, struct task_struct *parent, struct task_struct *child)
{
#ifdef CHECK_KFUNC_WEAK
	if (bpf_strlen)  /* what libbpf's bpf_ksym_exists() tests: 0 where the kernel lacks it */
		length = bpf_strlen(word);
#else
	length = bpf_strlen(word);
#endif
	return 0;
}

#ifdef CHECK_KFUNC_WEAK
SEC("tp_btf/sched_process_fork")
int BPF_PROG(unguarded, struct task_struct *parent, struct task_struct *child)
{
	where = bpf_strchr(word, 'b');
	return 0;
}
#endif
