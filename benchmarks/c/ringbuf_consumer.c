// SPDX-License-Identifier: GPL-2.0
/* The C baseline for benchmarks/ringbuf_bench.py: libbpf's own ring buffer
 * consumer with a callback that only counts ("consume"), or that counts and
 * adds up each record's first u64, its sequence number ("consume sum": the
 * same work as the Python side's batch["seq"].sum()).
 *
 * Usage: ringbuf_consumer MAP_FD   (the fd is inherited from the benchmark)
 * For each line "consume" or "consume sum" on stdin it runs
 * ring_buffer__consume() once and prints "<records> <nanoseconds> <sum>";
 * anything else (or EOF) ends it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>

static long long seen;
static unsigned long long total;

static int count_cb(void *ctx, void *data, size_t size)
{
	seen++;
	return 0;
}

static int sum_cb(void *ctx, void *data, size_t size)
{
	seen++;
	total += *(const unsigned long long *)data;
	return 0;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb, *rb_sum;
	char line[64];

	if (argc != 2) {
		fprintf(stderr, "usage: %s MAP_FD\n", argv[0]);
		return 2;
	}
	rb = ring_buffer__new(atoi(argv[1]), count_cb, NULL, NULL);
	rb_sum = ring_buffer__new(atoi(argv[1]), sum_cb, NULL, NULL);
	if (!rb || !rb_sum) {
		perror("ring_buffer__new");
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		long long start, elapsed;
		int ret;

		if (strncmp(line, "consume", 7) != 0)
			break;
		seen = 0;
		total = 0;
		start = now_ns();
		ret = ring_buffer__consume(strncmp(line, "consume sum", 11) == 0 ? rb_sum : rb);
		elapsed = now_ns() - start;
		if (ret < 0) {
			fprintf(stderr, "ring_buffer__consume: %d\n", ret);
			break;
		}
		printf("%lld %lld %llu\n", seen, elapsed, total);
		fflush(stdout);
	}
	ring_buffer__free(rb_sum);
	ring_buffer__free(rb);
	return 0;
}
