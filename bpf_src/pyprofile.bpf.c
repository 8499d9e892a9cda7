// SPDX-License-Identifier: GPL-2.0
/* pyprofile: Python stacks of the thread on CPU, read by BPF (pybpf.tools.pyprofile).
 *
 * A perf_event program on a CPU clock (one event per CPU, opened by pybpf.perf). For a
 * sample of a process in `procs` it finds the thread's PyThreadState (a per-thread cache,
 * checked by its native_thread_id, else a walk of _PyRuntime's interpreters and their
 * thread lists), then walks the thread's _PyInterpreterFrame chain from the innermost
 * frame outwards, up to `max_depth` frames, and counts the stack of code objects.
 *
 * Nothing about CPython's layout is compiled in: every offset comes from user space in
 * the process's `struct py_proc` (pybpf.pyframes: _Py_DebugOffsets on 3.13, the headers'
 * BTF on 3.11/3.12), verified against the process before the first sample.
 *
 * A frame is kept only when its code object's type is PyCode_Type (C-stack shim frames
 * are skipped, and a frame that is not what the offsets say is never named). Each frame
 * is one u64: the code object's address (47 bits), bits 48..62 the low 15 bits of its
 * co_firstlineno (so that user space can tell a freed and reused address), bit 63 set on
 * an entry frame (the first frame run by a C call into the interpreter: --native uses it
 * to interleave C frames).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_DEPTH 512          /* the compiled bound; rodata max_depth may be lower */
#define MAX_WALK 1024          /* thread states looked at to find the current one */
#define ENTRY_BIT (1ULL << 63)

#define F_TRUNCATED 1          /* more frames than max_depth: the outermost ones are missing */
#define F_NO_TSTATE 2          /* a thread with no Python thread state (a C thread) */
#define F_READ_ERROR 4         /* a read failed mid-walk: the outer frames are missing */

const volatile __u32 max_depth = 128;
const volatile bool user_stacks = false;   /* --native: the user stack id too */

struct py_proc {
	__u64 runtime;              /* &_PyRuntime in the process */
	__u64 code_type;            /* &PyCode_Type */
	__u64 pidns_dev;            /* the process's pid namespace, for its own thread ids */
	__u64 pidns_ino;            /* 0: same as ours */
	__u32 runtime_interpreters_head;
	__u32 interp_next;
	__u32 interp_threads_head;
	__u32 tstate_next;
	__u32 tstate_native_thread_id;
	__u32 tstate_frame;
	__s32 cframe_current_frame; /* -1: tstate_frame is the frame itself (3.13) */
	__u32 frame_previous;
	__u32 frame_code;
	__s32 frame_is_entry;       /* -1: none (3.12+) */
	__s32 frame_owner;
	__s32 owner_cstack;         /* value of FRAME_OWNED_BY_CSTACK, -1: none */
	__u32 code_firstlineno;
	__u32 object_type;
};

struct sample_key {
	__u32 pid;
	__u32 tid;
	__u32 depth;
	__u32 flags;
	__s32 user_stack_id;
	__s32 kern_stack_id;
	__u64 frames[MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);                 /* tgid */
	__type(value, struct py_proc);
} procs SEC(".maps");

/* key_size is set by user space to offsetof(frames) + 8 * max_depth before load */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(struct sample_key));
	__uint(value_size, sizeof(__u64));
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_key);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);                 /* tgid << 32 | tid */
	__type(value, __u64);               /* its PyThreadState */
} tstates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
	__uint(max_entries, 4096);
} stackmap SEC(".maps");

struct sample_key *unused_key __attribute__((unused));

__u64 samples = 0;      /* samples of the processes in procs */
__u64 no_tstate = 0;    /* of a thread with no Python thread state */
__u64 truncated = 0;    /* stacks cut at max_depth */
__u64 read_errors = 0;  /* walks stopped by a failed read */
__u64 walks = 0;        /* thread lists walked (tstate cache misses) */
__u64 dropped = 0;      /* counts map full */

static __always_inline __u64 read_ptr(__u64 addr)
{
	__u64 value = 0;

	if (bpf_probe_read_user(&value, sizeof(value), (void *)addr))
		return 0;
	return value;
}

/* bpf_loop callbacks: each step is verified once, whatever the depth */
struct find_ctx {
	__u32 pid;
	__u32 tid;
	__u64 interp;
	__u64 t;
	__u64 found;
};

static int find_step(__u32 index, struct find_ctx *c)
{
	struct py_proc *proc = bpf_map_lookup_elem(&procs, &c->pid);

	if (!proc)
		return 1;
	if (!c->t) {
		c->interp = read_ptr(c->interp + proc->interp_next);
		if (!c->interp)
			return 1;
		c->t = read_ptr(c->interp + proc->interp_threads_head);
		return 0;
	}
	if (read_ptr(c->t + proc->tstate_native_thread_id) == c->tid) {
		c->found = c->t;
		return 1;
	}
	c->t = read_ptr(c->t + proc->tstate_next);
	return 0;
}

static __always_inline __u64 find_tstate(struct py_proc *proc, __u32 pid, __u64 key, __u32 tid)
{
	__u64 *cached = bpf_map_lookup_elem(&tstates, &key);
	struct find_ctx c = {.pid = pid, .tid = tid};

	if (cached && *cached && read_ptr(*cached + proc->tstate_native_thread_id) == tid)
		return *cached;
	__sync_fetch_and_add(&walks, 1);
	c.interp = read_ptr(proc->runtime + proc->runtime_interpreters_head);
	if (!c.interp)
		return 0;
	c.t = read_ptr(c.interp + proc->interp_threads_head);
	bpf_loop(MAX_WALK, find_step, &c, 0);
	if (c.found)
		bpf_map_update_elem(&tstates, &key, &c.found, BPF_ANY);
	return c.found;
}

struct walk_ctx {
	__u32 pid;
	__u32 depth;
	__u64 frame;
	__u32 error;
	__u32 _pad;
};

static int walk_step(__u32 index, struct walk_ctx *c)
{
	struct py_proc *proc = bpf_map_lookup_elem(&procs, &c->pid);
	__u32 zero = 0, line, depth = c->depth;
	struct sample_key *key = bpf_map_lookup_elem(&scratch, &zero);
	__u64 code = 0, kind, frame = c->frame;
	__u8 byte = 0;

	if (!proc || !key || !frame || depth >= max_depth || depth >= MAX_DEPTH)
		return 1;
	if (bpf_probe_read_user(&code, sizeof(code), (void *)(frame + proc->frame_code)))
		goto error;
	if (proc->owner_cstack >= 0) {
		if (bpf_probe_read_user(&byte, 1, (void *)(frame + proc->frame_owner)))
			goto error;
		if (byte == proc->owner_cstack)
			code = 0;
	}
	kind = code ? read_ptr(code + proc->object_type) : 0;
	if (kind != proc->code_type) {
		/* a C-stack shim frame: the frame below it was entered from C */
		if (depth > 0)
			key->frames[(depth - 1) & (MAX_DEPTH - 1)] |= ENTRY_BIT;
	} else {
		line = 0;
		bpf_probe_read_user(&line, sizeof(line), (void *)(code + proc->code_firstlineno));
		code |= (__u64)(line & 0x7fff) << 48;
		if (proc->frame_is_entry >= 0) {
			byte = 0;
			bpf_probe_read_user(&byte, 1, (void *)(frame + proc->frame_is_entry));
			if (byte)
				code |= ENTRY_BIT;
		}
		key->frames[depth & (MAX_DEPTH - 1)] = code;
		c->depth = depth + 1;
	}
	if (bpf_probe_read_user(&c->frame, sizeof(c->frame), (void *)(frame + proc->frame_previous)))
		goto error;
	return 0;
error:
	c->error = 1;
	return 1;
}

struct clear_ctx {
	__u32 from;
};

static int clear_step(__u32 index, struct clear_ctx *c)
{
	__u32 zero = 0, i = c->from + index;
	struct sample_key *key = bpf_map_lookup_elem(&scratch, &zero);

	if (!key || i >= max_depth || i >= MAX_DEPTH)
		return 1;
	key->frames[i] = 0;
	return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	static const __u64 one = 1;
	__u64 id = bpf_get_current_pid_tgid(), tstate, frame, *count;
	__u32 pid = id >> 32, tid = (__u32)id, ns_tid = tid, zero = 0, flags = 0;
	struct bpf_pidns_info ns = {};
	struct walk_ctx walk = {};
	struct clear_ctx clear = {};
	struct sample_key *key;
	struct py_proc *proc;

	proc = bpf_map_lookup_elem(&procs, &pid);
	if (!proc)
		return 0;
	key = bpf_map_lookup_elem(&scratch, &zero);
	if (!key)
		return 0;
	__sync_fetch_and_add(&samples, 1);
	if (proc->pidns_ino) {
		if (bpf_get_ns_current_pid_tgid(proc->pidns_dev, proc->pidns_ino, &ns, sizeof(ns)))
			return 0;
		ns_tid = ns.pid;
	}
	key->pid = pid;
	key->tid = tid;
	key->user_stack_id = user_stacks ? bpf_get_stackid(ctx, &stackmap, BPF_F_USER_STACK) : -1;
	key->kern_stack_id = -1;

	tstate = find_tstate(proc, pid, id, ns_tid);
	if (!tstate) {
		flags |= F_NO_TSTATE;
		__sync_fetch_and_add(&no_tstate, 1);
	} else {
		frame = read_ptr(tstate + proc->tstate_frame);
		if (frame && proc->cframe_current_frame >= 0)
			frame = read_ptr(frame + proc->cframe_current_frame);
		walk.pid = pid;
		walk.frame = frame;
		bpf_loop(MAX_DEPTH, walk_step, &walk, 0);
		if (walk.error) {
			flags |= F_READ_ERROR;
			__sync_fetch_and_add(&read_errors, 1);
		} else if (walk.frame) {
			flags |= F_TRUNCATED;
			__sync_fetch_and_add(&truncated, 1);
		}
	}
	/* the hash covers max_depth frames: clear what an earlier, deeper sample left */
	clear.from = walk.depth;
	bpf_loop(MAX_DEPTH, clear_step, &clear, 0);
	key->depth = walk.depth;
	key->flags = flags;
	count = bpf_map_lookup_elem(&counts, key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	if (bpf_map_update_elem(&counts, key, &one, BPF_NOEXIST)) {
		count = bpf_map_lookup_elem(&counts, key);
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			__sync_fetch_and_add(&dropped, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
