// SPDX-License-Identifier: GPL-2.0
/* A program the verifier must reject: it dereferences a map value without
 * checking it for NULL (a hash map: the verifier knows constant-key array
 * lookups cannot fail).  Used to test VerifierError and its log.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int unchecked_lookup(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &key);

	*value += 1; /* no NULL check: the verifier says no */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
