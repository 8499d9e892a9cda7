/* Versions of one tool whose map value struct changes (upgrade_struct_v1/v2/v3.bpf.c).
 *
 * v1 -> v2: `struct flow` loses `legacy`, gains `added`, has its members
 * reordered and `flags` widened from 32 to 64 bits; .bss loses `v1_only`
 * and gains `v2_only`.  An upgrade migrates `flows` by member name.
 * v3 makes `flows` an array map: no migration can carry that, the upgrade
 * must refuse it before anything is attached.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#if STRUCT_VERSION == 1
struct flow {
	__u64 packets;
	__u32 legacy;
	__u32 flags;
	__u64 bytes;
};
__u32 v1_only = 0;
#else
struct flow {
	__u64 bytes;
	__u64 packets;
	__u64 flags;
	__u32 added;
	__u32 pad;
};
__u64 v2_only = 0;
#endif

const volatile __u32 want_tgid = 0;
__u64 total = 0;              /* .bss, in every version */
__u32 knob = 5;               /* .data, in every version */

struct {
#if STRUCT_VERSION == 3
	__uint(type, BPF_MAP_TYPE_ARRAY);
#else
	__uint(type, BPF_MAP_TYPE_HASH);
#endif
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct flow);
} flows SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int track(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct flow *flow;

	if (tgid != want_tgid)
		return 0;
	__sync_fetch_and_add(&total, knob);
	flow = bpf_map_lookup_elem(&flows, &tgid);
	if (flow)
		__sync_fetch_and_add(&flow->packets, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
