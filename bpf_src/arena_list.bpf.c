// SPDX-License-Identifier: GPL-2.0
/* An arena map (BPF_MAP_TYPE_ARENA) shared with Python: a program builds a linked list in it
 * with real pointers, and Python walks the same list through a numpy view of the arena.
 * `__arena` pointers need clang 19 (address_space(1) and the addr_space_cast instruction):
 * CMake builds this file with clang 19 or newer (bpf_src/CLANG19_SOURCES).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define __arena __attribute__((address_space(1)))
#define NUMA_NO_NODE (-1)
#define MAX_NODES 128

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);                 /* pages */
} arena SEC(".maps");

struct list_node {
	struct list_node __arena *next;              /* a pointer Python follows as it is */
	__u64 value;
	__u32 index;
	__u32 pad;
};

/* a copy of the record for Python's dtype (not used by the program) */
struct list_node *list_node_type_for_btf __attribute__((unused));

const volatile __u32 count = 0;
struct list_node __arena *head;                  /* the first node, in .bss */
__u64 built;

SEC("syscall")
int build_list(void *ctx)
{
	struct list_node __arena *page;
	__u32 i;

	page = (struct list_node __arena *)bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page)
		return 1;
	for (i = 0; i < count && i < MAX_NODES; i++) {
		struct list_node __arena *n = page + i;

		n->value = (__u64)(i + 1) * (i + 1);
		n->index = i;
		n->next = head;                 /* pushed at the front: the list reads count-1 .. 0 */
		head = n;
	}
	built = i;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
