// SPDX-License-Identifier: GPL-2.0
/* pyaudit: CPython's audit events (USDT python:audit) with their simple arguments.
 *
 * python:audit(const char *event, PyObject *args): args is a tuple.  Every event is
 * counted by name in `counts` (exact, whatever the ring buffer drops); with
 * `emit_events` set, a record with the name and the first ARGS arguments (type name
 * plus the first RAW_BYTES of the object, decoded in user space) goes to `events`. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#define NAME_LEN 64
#define TYPE_LEN 16
#define ARGS 4
#define RAW_BYTES 96

const volatile __u32 targ_tgid = 0;
const volatile bool emit_events = true;

struct name_key {
	char name[NAME_LEN];
};

struct audit_arg {
	char type[TYPE_LEN];       /* tp_name of the object's type */
	__u32 read;                /* bytes of raw that were read (0: unreadable) */
	__u32 _pad;
	__u8 raw[RAW_BYTES];       /* the object's first bytes: header and inline payload */
};

struct audit_event {
	__u64 ts;
	__u32 pid;
	__u32 tid;
	__s32 nargs;               /* the tuple's length (-1: unreadable) */
	__u32 _pad;
	char name[NAME_LEN];
	struct audit_arg args[ARGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct name_key);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_key);
} scratch SEC(".maps");

__u64 dropped = 0;
__u64 full = 0;            /* distinct names beyond the counts map's capacity */
struct audit_event *unused_audit_event __attribute__((unused));

SEC("usdt")
int on_audit(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct name_key *key;
	struct audit_event *e;
	long event_ptr = 0, tuple = 0, item, type, tp_name;
	__u64 one = 1, *count;
	__u32 zero = 0;
	int i;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	key = bpf_map_lookup_elem(&scratch, &zero);
	if (!key)
		return 0;
	bpf_usdt_arg(ctx, 0, &event_ptr);
	bpf_usdt_arg(ctx, 1, &tuple);
	__builtin_memset(key->name, 0, NAME_LEN);
	bpf_probe_read_user_str(key->name, NAME_LEN, (void *)event_ptr);
	count = bpf_map_lookup_elem(&counts, key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else if (bpf_map_update_elem(&counts, key, &one, BPF_NOEXIST)) {
		if ((count = bpf_map_lookup_elem(&counts, key)))   /* another CPU made it first */
			__sync_fetch_and_add(count, 1);
		else
			__sync_fetch_and_add(&full, 1);
	}
	if (!emit_events)
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->ts = bpf_ktime_get_ns();
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	bpf_probe_read_kernel(e->name, NAME_LEN, key->name);
	/* PyTupleObject: ob_refcnt, ob_type, ob_size (8 bytes each), then ob_item[] */
	e->nargs = -1;
	if (tuple) {
		long size = 0;

		if (!bpf_probe_read_user(&size, sizeof(size), (void *)(tuple + 16)))
			e->nargs = size;
	}
	for (i = 0; i < ARGS; i++) {
		struct audit_arg *a = &e->args[i];

		a->read = 0;
		a->type[0] = 0;
		if (i >= e->nargs)
			continue;
		item = 0;
		if (bpf_probe_read_user(&item, sizeof(item), (void *)(tuple + 24 + 8 * i)) || !item)
			continue;
		type = tp_name = 0;
		/* PyObject: ob_refcnt, ob_type; PyTypeObject: PyVarObject head (24), tp_name */
		if (!bpf_probe_read_user(&type, sizeof(type), (void *)(item + 8)) &&
		    !bpf_probe_read_user(&tp_name, sizeof(tp_name), (void *)(type + 24)))
			bpf_probe_read_user_str(a->type, TYPE_LEN, (void *)tp_name);
		if (!bpf_probe_read_user(a->raw, RAW_BYTES, (void *)item))
			a->read = RAW_BYTES;
		else if (!bpf_probe_read_user(a->raw, 32, (void *)item))
			a->read = 32;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
