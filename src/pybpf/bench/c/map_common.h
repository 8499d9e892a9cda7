/* Shared state of the pybpf benchmark's C baselines.
 *
 * One process serves one benchmark case on one map: the harness passes the
 * map fd (inherited), the op and the sizes on the command line, then writes
 * "run\n" once per repetition; each pass answers "<elapsed_ns> <checksum>
 * <count>\n". Keeping the process alive lets the harness interleave C and
 * Python passes without paying a fork/exec or a cold cache per pass.
 */
#ifndef PYBPF_BENCH_COMMON_H
#define PYBPF_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Word j of the value stored under key k (same formula as pybpf.bench.fill). */
#define PATTERN_MUL 0x9E3779B97F4A7C15ull
static inline uint64_t pattern_word(uint64_t key, uint64_t j)
{
	return (key + 1) * PATTERN_MUL + j;
}

struct bench {
	int fd;             /* the map; -1 for the plain-memory baseline */
	uint32_t entries;   /* keys are the u32 values 0 .. entries-1 */
	uint32_t key_size;  /* always 4 */
	uint32_t value_size;/* a multiple of 8 */
	uint32_t chunk;     /* batch ops: elements per syscall */
	uint32_t inner;     /* memory ops: copies per pass (to get above timer noise) */
	void *keys;         /* entries keys, filled once */
	void *values;       /* entries values: source (update) or destination (lookup) */
	void *src;          /* memory ops: the mmapped map or a plain buffer */
	size_t bytes;       /* memory ops: bytes copied per copy */
};

struct result {
	uint64_t checksum;  /* wrapping sum of every u64 word read or written */
	uint64_t count;     /* elements handled */
};

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t sum_words(const void *buf, size_t bytes)
{
	const uint64_t *w = buf;
	uint64_t sum = 0;
	for (size_t i = 0; i < bytes / 8; i++)
		sum += w[i];
	return sum;
}

/* map_keys.c: one syscall per key */
int op_lookup(struct bench *b, struct result *r);
int op_update(struct bench *b, struct result *r);
/* map_batch.c: BPF_MAP_*_BATCH in chunks */
int op_batch(struct bench *b, struct result *r);
int op_update_batch(struct bench *b, struct result *r);
/* map_mem.c: copying the mmapped map vs plain memory */
int setup_mmap(struct bench *b);
int setup_plain(struct bench *b);
int op_copy(struct bench *b, struct result *r);
/* map_extra.c: open+load of an object; libbpf's ring buffer consumer */
int setup_load(struct bench *b);
int op_load(struct bench *b, struct result *r);
int setup_ring(struct bench *b, int copy);
int op_ring(struct bench *b, struct result *r);

#endif
