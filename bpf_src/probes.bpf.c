// SPDX-License-Identifier: GPL-2.0
/* User-space probes, perf events and an iterator. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 want_tgid = 0;

__u64 uprobe_hits = 0;
__u64 uretprobe_hits = 0;
__s64 last_retval = 0;
__u64 perf_hits = 0;

static __always_inline int wanted(void)
{
	return want_tgid == 0 || (bpf_get_current_pid_tgid() >> 32) == want_tgid;
}

SEC("uprobe")
int on_enter(struct pt_regs *ctx)
{
	if (wanted())
		__sync_fetch_and_add(&uprobe_hits, 1);
	return 0;
}

SEC("uretprobe")
int on_return(struct pt_regs *ctx)
{
	if (wanted()) {
		__sync_fetch_and_add(&uretprobe_hits, 1);
		last_retval = PT_REGS_RC(ctx);
	}
	return 0;
}

SEC("perf_event")
int on_perf_event(void *ctx)
{
	__sync_fetch_and_add(&perf_hits, 1);
	return 0;
}

/* One line per task of the wanted tgid (or every task): "tgid pid comm". */
SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	if (want_tgid && task->tgid != want_tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
