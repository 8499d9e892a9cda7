/* pybpf benchmark C baselines: the driver.
 *
 * usage: pybpf-bench-c OP FD ENTRIES VALUE_SIZE CHUNK INNER
 *   OP: lookup | update | batch | update_batch | mmap_copy | memcpy | load | ring_count | ring_copy
 * Reads "run" lines on stdin; answers "<elapsed_ns> <checksum> <count>" per
 * line, or "error <errno>" (see map_common.h for why it is a long-lived process).
 * "warm N" does the same over the first N keys only (a cheap warm-up).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "map_common.h"

typedef int (*op_fn)(struct bench *, struct result *);

static int prepare(struct bench *b, const char *op, op_fn *fn)
{
	size_t vbytes = (size_t)b->entries * ((b->value_size + 7) & ~7u);
	uint32_t *keys;

	b->keys = malloc((size_t)b->entries * b->key_size);
	b->values = malloc(vbytes ? vbytes : 8);
	if (!b->keys || !b->values)
		return -ENOMEM;
	keys = b->keys;
	for (uint32_t k = 0; k < b->entries; k++)
		keys[k] = k;
	/* update sources hold the pattern; lookup destinations are overwritten */
	for (size_t i = 0; i < vbytes / 8; i++)
		((uint64_t *)b->values)[i] = pattern_word(i / (b->value_size / 8), i % (b->value_size / 8));

	if (!strcmp(op, "lookup"))
		*fn = op_lookup;
	else if (!strcmp(op, "update"))
		*fn = op_update;
	else if (!strcmp(op, "batch"))
		*fn = op_batch;
	else if (!strcmp(op, "update_batch"))
		*fn = op_update_batch;
	else if (!strcmp(op, "mmap_copy")) {
		*fn = op_copy;
		return setup_mmap(b);
	} else if (!strcmp(op, "memcpy")) {
		*fn = op_copy;
		return setup_plain(b);
	} else if (!strcmp(op, "load")) {
		*fn = op_load;
		return setup_load(b);
	} else if (!strcmp(op, "ring_count") || !strcmp(op, "ring_copy")) {
		*fn = op_ring;
		return setup_ring(b, !strcmp(op, "ring_copy"));
	} else
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {.key_size = 4};
	struct result r;
	char line[64];
	op_fn fn;
	int err;

	if (argc != 7) {
		fprintf(stderr, "usage: %s OP FD ENTRIES VALUE_SIZE CHUNK INNER\n", argv[0]);
		return 2;
	}
	b.fd = atoi(argv[2]);
	b.entries = strtoul(argv[3], NULL, 10);
	b.value_size = strtoul(argv[4], NULL, 10);
	b.chunk = strtoul(argv[5], NULL, 10);
	b.inner = strtoul(argv[6], NULL, 10);
	if (b.value_size % 8 || !b.chunk || !b.inner) {
		fprintf(stderr, "value size must be a multiple of 8; chunk and inner > 0\n");
		return 2;
	}
	err = prepare(&b, argv[1], &fn);
	if (err) {
		printf("error %d\n", -err);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		uint32_t all = b.entries;
		uint64_t t0, t1;

		if (!strncmp(line, "warm ", 5) && strtoul(line + 5, NULL, 10) < all)
			b.entries = strtoul(line + 5, NULL, 10);
		memset(&r, 0, sizeof(r));
		t0 = now_ns();
		err = fn(&b, &r);
		t1 = now_ns();
		b.entries = all;
		if (err)
			printf("error %d\n", err < 0 ? -err : err);
		else
			printf("%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", t1 - t0, r.checksum, r.count);
	}
	return 0;
}
