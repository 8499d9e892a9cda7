/* Two versions of one counting tool for the upgrade tests (upgrade_count_a/b.bpf.c).
 *
 * Both versions declare the same maps, so an upgrade reuses them: `counts`
 * (mmapable: the tests read it with zero-copy views) holds the getppid()
 * count of the wanted tgid in slot 0 and the XDP count of test frames in
 * slot 1.  Version 3 (upgrade_count_bad) fails verification.  The versions differ in code (B also records its version and
 * counts with a different instruction sequence) and in `version`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define ETH_P_PYBPF 0x88b5  /* IEEE local experimental ethertype: only the tests send it */

const volatile __u32 want_tgid = 0;
__u64 seen_by_this_version = 0;           /* .bss: carried across versions by name */
__u32 last_version = 0;                   /* .bss */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&counts, &slot);

	if (value) {
#if UPGRADE_VERSION == 1
		__sync_fetch_and_add(value, 1);
#else
		__u64 one = 1;
		__sync_fetch_and_add(value, one);
		last_version = UPGRADE_VERSION;
#endif
	}
	__sync_fetch_and_add(&seen_by_this_version, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != want_tgid)
		return 0;
#if UPGRADE_VERSION == 3
	{	/* the broken version: a key the verifier cannot bound and no NULL check */
		__u32 slot = bpf_get_prandom_u32();
		__u64 *value = bpf_map_lookup_elem(&counts, &slot);

		*value += 1;
	}
#else
	bump(0);
#endif
	return 0;
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == __builtin_bswap16(ETH_P_PYBPF))
		bump(1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
