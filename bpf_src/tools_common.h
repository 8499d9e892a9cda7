/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers shared by the BPF side of pybpf's tools (pybpf/tools/). */
#ifndef PYBPF_TOOLS_COMMON_H
#define PYBPF_TOOLS_COMMON_H

/* floor(log2(v)), with log2(0) = 0: the slot convention of libbpf-tools' histograms
 * (slot i holds values in [2^i, 2^(i+1) - 1]; slot 0 holds 0 and 1). */
static __always_inline __u64 log2_u32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_u32(hi) + 32 : log2_u32(v);
}

#endif
