/* Per-key baselines: one bpf_map_lookup_elem / bpf_map_update_elem per key. */
#include <errno.h>
#include <bpf/bpf.h>
#include "map_common.h"

int op_lookup(struct bench *b, struct result *r)
{
	uint64_t value[b->value_size / 8];
	uint64_t sum = 0;

	for (uint32_t k = 0; k < b->entries; k++) {
		int err = bpf_map_lookup_elem(b->fd, &k, value);
		if (err)
			return err;
		sum += sum_words(value, b->value_size);
	}
	r->checksum = sum;
	r->count = b->entries;
	return 0;
}

int op_update(struct bench *b, struct result *r)
{
	const char *values = b->values;

	for (uint32_t k = 0; k < b->entries; k++) {
		int err = bpf_map_update_elem(b->fd, &k, values + (size_t)k * b->value_size, BPF_ANY);
		if (err)
			return err;
	}
	r->checksum = sum_words(b->values, (size_t)b->entries * b->value_size);
	r->count = b->entries;
	return 0;
}
