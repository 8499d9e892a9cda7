// SPDX-License-Identifier: GPL-2.0
/* The exact merge of an upgrade (pybpf.upgrade.merge).
 *
 * When a map's layout changes, an upgrade copies the old map into the new
 * one before the switch; the old version keeps counting until the switch,
 * and its programs already running then finish after it.  Once none can run
 * any more, user space reads the old map's final state F and sends, per
 * entry, what changed since the copy S: for integer counters the difference
 * F - S, added here with an atomic add (the new version counts into the same
 * values concurrently); for last-value fields a compare-and-swap from S to F
 * (kept if the new version wrote the field meanwhile).  A BPF_PROG_TYPE_SYSCALL
 * program run through BPF_PROG_TEST_RUN does it: user space cannot add
 * atomically into a map value.
 *
 * `target` is the new version's map and `snapshot` holds S (in the new
 * layout), both given with bpf_map__reuse_fd; the sizes below are set before
 * load, so the verifier checks every access against the real value size.
 * Each record's ops run in one program run together with the update of its
 * snapshot entry to F: a kill of the caller cannot split them, so running
 * the same merge again (after a crash) adds nothing twice.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum {
	OP_RECORD = 1,  /* start of a record: maybe insert it, then set its snapshot to F */
	OP_ADD64 = 2,
	OP_ADD32 = 3,
	OP_ADD16 = 4,
	OP_ADD8 = 5,
	OP_CAS64 = 6,
	OP_CAS32 = 7,
	OP_SET8 = 8,    /* compare-and-store of one byte (not atomic: no 8-bit cmpxchg) */
};

#define REC_INSERT 1  /* insert a zero value first if the key is absent */

struct merge_op {
	__u32 rec;      /* index of the record (key, F) in `records` */
	__u16 kind;
	__u16 cpu;      /* CAS/SET on a per-CPU map: whose slot */
	__u32 off;      /* byte offset in the value */
	__u32 flags;
	__u64 a;        /* ADD: the difference; CAS/SET: the expected value */
	__u64 b;        /* CAS/SET: the new value */
};

struct merge_args {
	__u32 first;    /* first op of this run */
	__u32 count;
};

const volatile __u32 value_size = 8;      /* one value of `target` (one CPU's for per-CPU maps) */
const volatile __u32 snap_off = 8;        /* where F starts in a record (after the padded key) */
const volatile __u32 percpu = 0;

__u64 applied = 0, inserted = 0, missing = 0, kept = 0, failed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, 4);
	__uint(value_size, 8);
	__uint(max_entries, 1);
} target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, 4);
	__uint(value_size, 8);
	__uint(max_entries, 1);
} snapshot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(key_size, 4);
	__uint(value_size, 16);   /* set before load: padded key + F */
	__uint(max_entries, 1);   /* set before load */
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct merge_op);
	__uint(max_entries, 1);   /* set before load */
} ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 8);    /* set before load: value_size of target */
	__uint(max_entries, 1);
} zeros SEC(".maps");

struct merge_state {
	__u32 first;
};

static __always_inline void *value_of(void *key, __u32 cpu, int any_cpu)
{
	if (percpu && !any_cpu)
		return bpf_map_lookup_percpu_elem(&target, key, cpu);
	return bpf_map_lookup_elem(&target, key);
}

static __always_inline void add_narrow(void *v, __u32 off, __u64 delta, __u32 width)
{
	/* 8/16-bit counters: a compare-and-swap loop on the aligned 32-bit word around them */
	__u32 word_off, shift, mask, old, new;
	__u32 *word;
	int i;

	if (value_size < 4)
		return;
	word_off = off & ~3U;
	if (word_off > value_size - 4)
		return;
	word = v + word_off;
	shift = (off & 3) * 8;
	mask = width == 1 ? 0xffU : 0xffffU;
	for (i = 0; i < 64; i++) {
		old = *(volatile __u32 *)word;
		new = (old & ~(mask << shift)) | ((((old >> shift) + (__u32)delta) & mask) << shift);
		if (__sync_val_compare_and_swap(word, old, new) == old) {
			applied++;
			return;
		}
	}
	failed++;
}

static int apply(__u32 i, struct merge_state *st)
{
	__u32 idx = st->first + i, off;
	struct merge_op *op = bpf_map_lookup_elem(&ops, &idx);
	void *rec, *v, *zero;
	__u32 zkey = 0;

	if (!op)
		return 1;
	rec = bpf_map_lookup_elem(&records, &op->rec);
	if (!rec)
		return 1;
	off = op->off;
	switch (op->kind) {
	case OP_RECORD:
		if (op->flags & REC_INSERT) {
			zero = bpf_map_lookup_elem(&zeros, &zkey);
			if (zero && bpf_map_update_elem(&target, rec, zero, BPF_NOEXIST) == 0)
				inserted++;
		}
		if (bpf_map_update_elem(&snapshot, rec, rec + snap_off, BPF_ANY))
			failed++;
		return 0;
	case OP_ADD64:
		v = value_of(rec, 0, 1);
		if (!v) {
			missing++;
			return 0;
		}
		if (value_size < 8 || off > value_size - 8)
			return 0;
		off &= ~7U;
		__sync_fetch_and_add((__u64 *)(v + off), op->a);
		applied++;
		return 0;
	case OP_ADD32:
		v = value_of(rec, 0, 1);
		if (!v) {
			missing++;
			return 0;
		}
		if (value_size < 4 || off > value_size - 4)
			return 0;
		off &= ~3U;
		__sync_fetch_and_add((__u32 *)(v + off), (__u32)op->a);
		applied++;
		return 0;
	case OP_ADD16:
	case OP_ADD8:
		v = value_of(rec, 0, 1);
		if (!v) {
			missing++;
			return 0;
		}
		add_narrow(v, off, op->a, op->kind == OP_ADD16 ? 2 : 1);
		return 0;
	case OP_CAS64:
		v = value_of(rec, op->cpu, 0);
		if (!v) {
			missing++;
			return 0;
		}
		if (value_size < 8 || off > value_size - 8)
			return 0;
		off &= ~7U;
		if (__sync_val_compare_and_swap((__u64 *)(v + off), op->a, op->b) == op->a)
			applied++;
		else
			kept++;
		return 0;
	case OP_CAS32:
		v = value_of(rec, op->cpu, 0);
		if (!v) {
			missing++;
			return 0;
		}
		if (value_size < 4 || off > value_size - 4)
			return 0;
		off &= ~3U;
		if (__sync_val_compare_and_swap((__u32 *)(v + off), (__u32)op->a, (__u32)op->b) == (__u32)op->a)
			applied++;
		else
			kept++;
		return 0;
	case OP_SET8:
		v = value_of(rec, op->cpu, 0);
		if (!v) {
			missing++;
			return 0;
		}
		if (value_size < 1 || off > value_size - 1)
			return 0;
		if (*(__u8 *)(v + off) == (__u8)op->a) {
			*(__u8 *)(v + off) = (__u8)op->b;
			applied++;
		} else {
			kept++;
		}
		return 0;
	}
	failed++;
	return 0;
}

SEC("syscall")
int merge(struct merge_args *args)
{
	struct merge_state st = { .first = args->first };

	bpf_loop(args->count, apply, &st, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
