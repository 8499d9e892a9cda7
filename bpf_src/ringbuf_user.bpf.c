// SPDX-License-Identifier: GPL-2.0
/* Consumer of a user ring buffer (user space -> BPF), for pybpf.UserRingBuffer.
 *
 * On each getppid(2) of `want_tgid`, drains `requests`: every sample is a
 * struct user_request whose value is added to `sum`; samples of another size are
 * counted in `bad_size`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct user_request {
	__u64 value;
	__u32 tag;
	__u32 pad;
};

struct user_request *unused_request_type __attribute__((unused));

const volatile __u32 want_tgid = 0;

__u64 sum = 0;
__u64 count = 0;
__u64 last_tag = 0;
__u64 bad_size = 0;
long last_drain = 0;

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 64 * 1024);
} requests SEC(".maps");

static long take(struct bpf_dynptr *dynptr, void *ctx)
{
	struct user_request req;

	if (bpf_dynptr_read(&req, sizeof(req), dynptr, 0, 0)) {
		bad_size++;
		return 0;
	}
	sum += req.value;
	last_tag = req.tag;
	count++;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int drain_requests(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != want_tgid)
		return 0;
	last_drain = bpf_user_ringbuf_drain(&requests, take, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
