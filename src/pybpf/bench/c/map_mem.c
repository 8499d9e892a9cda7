/* Memory baselines: memcpy out of the mmapped map, and memcpy of plain memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "map_common.h"

static size_t stride(const struct bench *b)
{
	return (b->value_size + 7) & ~(size_t)7; /* the kernel's element stride in an array map */
}

int setup_mmap(struct bench *b)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = ((size_t)b->entries * stride(b) + page - 1) / page * page;
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, b->fd, 0);

	if (map == MAP_FAILED)
		return -errno;
	b->src = map;
	b->bytes = (size_t)b->entries * stride(b);
	return 0;
}

int setup_plain(struct bench *b)
{
	uint64_t *src;
	size_t words = (size_t)b->entries * stride(b) / 8, per = stride(b) / 8;

	src = malloc(words * 8);
	if (!src)
		return -ENOMEM;
	for (size_t i = 0; i < words; i++)
		src[i] = pattern_word(i / per, i % per);
	b->src = src;
	b->bytes = words * 8;
	return 0;
}

int op_copy(struct bench *b, struct result *r)
{
	for (uint32_t i = 0; i < b->inner; i++) {
		memcpy(b->values, b->src, b->bytes);
		/* keep the compiler from merging or dropping copies */
		__asm__ volatile("" : : "r"(b->values) : "memory");
	}
	r->checksum = sum_words(b->values, b->bytes);
	r->count = (uint64_t)b->entries * b->inner;
	return 0;
}
