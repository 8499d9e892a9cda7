// SPDX-License-Identifier: GPL-2.0
/* Two programs per attach kind, for finding out which link kinds this kernel
 * can update in place (BPF_LINK_UPDATE): tests/test_upgrade_links.py attaches
 * the `_a` program and updates the link to the `_b` one.  Each bumps its own
 * counter, so a test can see which one runs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

__u64 hits_a = 0;
__u64 hits_b = 0;

#define PAIR(sec, ctx_t, name, ret)                                       \
	SEC(sec) int name##_a(ctx_t *ctx) { __sync_fetch_and_add(&hits_a, 1); return ret; } \
	SEC(sec) int name##_b(ctx_t *ctx) { __sync_fetch_and_add(&hits_b, 1); return ret; }

PAIR("xdp", struct xdp_md, kind_xdp, XDP_PASS)
PAIR("cgroup_skb/egress", struct __sk_buff, kind_cgroup, 1)
PAIR("sk_lookup", struct bpf_sk_lookup, kind_netns, SK_PASS)
PAIR("tracepoint/syscalls/sys_enter_getppid", void, kind_tracepoint, 0)
PAIR("raw_tp/sys_enter", void, kind_raw_tp, 0)
PAIR("tp_btf/sys_enter", void, kind_tp_btf, 0)
PAIR("uprobe", void, kind_uprobe, 0)
PAIR("perf_event", void, kind_perf_event, 0)

SEC("iter/task") int kind_iter_a(struct bpf_iter__task *ctx) { return 0; }
SEC("iter/task") int kind_iter_b(struct bpf_iter__task *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
