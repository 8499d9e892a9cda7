/* SPDX-License-Identifier: GPL-2.0 */
/* The filters libbpf-tools share, for pybpf's tools: the cgroup of `-c CGROUP_PATH`.
 *
 * User space sets `filter_cg` and puts the cgroup directory's fd at index 0 of
 * `cgroup_map` (a BPF_MAP_TYPE_CGROUP_ARRAY) before attaching; programs call
 * cgroup_allowed() first, as the C tools call bpf_current_task_under_cgroup().
 */
#ifndef PYBPF_TOOLS_FILTER_H
#define PYBPF_TOOLS_FILTER_H

const volatile bool filter_cg = false;

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_map SEC(".maps");

/* As the C tools: only a definite "not under it" (0) filters; an error lets the event pass. */
static __always_inline bool cgroup_allowed(void)
{
	return !filter_cg || bpf_current_task_under_cgroup(&cgroup_map, 0) != 0;
}

#endif
