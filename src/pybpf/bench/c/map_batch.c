/* Batch baselines: BPF_MAP_LOOKUP_BATCH / BPF_MAP_UPDATE_BATCH, `chunk` elements per call. */
#include <errno.h>
#include <bpf/bpf.h>
#include "map_common.h"

int op_batch(struct bench *b, struct result *r)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	char *keys = b->keys, *values = b->values;
	uint64_t tokens[2] = {0, 0}; /* in/out batch: a u32 bucket (hash) or a key (array) */
	uint32_t got = 0;
	int first = 1;

	/* Stop at max_entries (the buffers' size) or when the kernel says ENOENT. */
	while (got < b->entries) {
		uint32_t count = b->entries - got < b->chunk ? b->entries - got : b->chunk;
		int err = bpf_map_lookup_batch(b->fd, first ? NULL : &tokens[0], &tokens[1],
					       keys + (size_t)got * b->key_size,
					       values + (size_t)got * b->value_size, &count, &opts);
		got += count;
		if (err == -ENOENT)
			break;
		if (err)
			return err;
		tokens[0] = tokens[1];
		first = 0;
	}
	r->checksum = sum_words(b->values, (size_t)got * b->value_size);
	r->count = got;
	return 0;
}

int op_update_batch(struct bench *b, struct result *r)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	const char *keys = b->keys, *values = b->values;
	uint32_t done = 0;

	while (done < b->entries) {
		uint32_t count = b->entries - done < b->chunk ? b->entries - done : b->chunk;
		int err = bpf_map_update_batch(b->fd, keys + (size_t)done * b->key_size,
					       values + (size_t)done * b->value_size, &count, &opts);
		if (err)
			return err;
		done += count;
	}
	r->checksum = sum_words(b->values, (size_t)b->entries * b->value_size);
	r->count = done;
	return 0;
}
