// SPDX-License-Identifier: GPL-2.0
/* The C baseline for benchmarks/ringbuf_bench.py: libbpf's own ring buffer
 * consumer with a callback that only counts.
 *
 * Usage: ringbuf_consumer MAP_FD   (the fd is inherited from the benchmark)
 * For each line "consume" on stdin it runs ring_buffer__consume() once and
 * prints "<records> <nanoseconds>"; "quit" (or EOF) ends it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>

static long long seen;

static int count_cb(void *ctx, void *data, size_t size)
{
	seen++;
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
	struct ring_buffer *rb;
	char line[64];

	if (argc != 2) {
		fprintf(stderr, "usage: %s MAP_FD\n", argv[0]);
		return 2;
	}
	rb = ring_buffer__new(atoi(argv[1]), count_cb, NULL, NULL);
	if (!rb) {
		perror("ring_buffer__new");
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		long long start, elapsed;
		int ret;

		if (strncmp(line, "consume", 7) != 0)
			break;
		seen = 0;
		start = now_ns();
		ret = ring_buffer__consume(rb);
		elapsed = now_ns() - start;
		if (ret < 0) {
			fprintf(stderr, "ring_buffer__consume: %d\n", ret);
			break;
		}
		printf("%lld %lld\n", seen, elapsed);
		fflush(stdout);
	}
	ring_buffer__free(rb);
	return 0;
}
