/* Two versions of a counting tool whose value layouts differ (upgrade_exact_v1/v2.bpf.c).
 *
 * Every map is migrated on each upgrade between them, none reused: `stats`
 * (hash; the struct gains, loses and reorders fields), `pcpu` (per-CPU hash),
 * `hist` (array; u32 slots in v1, u64 in v2) and the .bss counter.  Each
 * getppid() of the wanted tgid adds one to each, so after any number of
 * upgrades every counter must equal the calls made: the exact merge.
 * v3 is v1 with fields in `stats` that cannot be merged exactly (named by
 * the upgrade as not exact).
 * `last_ns` is a last-value field (a timestamp), not a counter.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#if EXACT_VERSION == 1
struct tool_stat {
	__u64 calls;
	__u64 last_ns;
	__u32 v1_only;
};
struct tool_pcpu {
	__u64 calls;
};
typedef __u32 slot_t;
#elif EXACT_VERSION == 3
/* v3: `stats` gains fields no merge can add exactly: a float counter and a
 * counter at an unaligned offset (packed); the upgrade must name them. */
struct tool_stat {
	__u64 calls;
	__u64 last_ns;
	double ratio;
	__u32 v1_only;
	__u64 odd;
} __attribute__((packed));
struct tool_pcpu {
	__u64 calls;
};
typedef __u32 slot_t;
#else
struct tool_stat {
	__u32 flags;
	__u32 pad;
	__u64 last_ns;
	__u64 bytes;
	__u64 calls;
};
struct tool_pcpu {
	__u64 extra;
	__u64 calls;
};
typedef __u64 slot_t;
__u64 v2_only = 0;
#endif

const volatile __u32 want_tgid = 0;
__u64 bss_calls = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct tool_stat);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct tool_pcpu);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, slot_t);
} hist SEC(".maps");

static __always_inline int count_call(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 slot = bpf_get_prandom_u32() & 7;
	struct tool_stat *s, zero = {};
	struct tool_pcpu *p, pzero = {};
	slot_t *h;

	if (tgid != want_tgid)
		return 0;
	s = bpf_map_lookup_elem(&stats, &tgid);
	if (!s) {
		bpf_map_update_elem(&stats, &tgid, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, &tgid);
	}
	if (s) {
		__sync_fetch_and_add(&s->calls, 1);
		s->last_ns = bpf_ktime_get_ns();
	}
	p = bpf_map_lookup_elem(&pcpu, &tgid);
	if (!p) {
		bpf_map_update_elem(&pcpu, &tgid, &pzero, BPF_NOEXIST);
		p = bpf_map_lookup_elem(&pcpu, &tgid);
	}
	if (p)
		p->calls += 1;  /* per-CPU: no atomic needed */
	h = bpf_map_lookup_elem(&hist, &slot);
	if (h)
		__sync_fetch_and_add(h, 1);
	__sync_fetch_and_add(&bss_calls, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx)
{
	return count_call();
}

#ifdef EXACT_TWO_HOOKS
/* upgrade_exact2_v*: a second hook counting into the same maps (two attachments, whose
 * versions differ for a while if the upgrade is killed between their switches) */
SEC("tracepoint/syscalls/sys_enter_getpgid")
int count_pgid(void *ctx)
{
	return count_call();
}
#endif

char LICENSE[] SEC("license") = "GPL";
