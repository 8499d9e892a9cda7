/* Baselines beyond map element access: an object's open+load, and libbpf's
 * ring buffer consumer.
 *
 * load:       FD is unused; the object path comes from $PYBPF_BENCH_OBJECT.
 *             One pass = bpf_object__open_file + bpf_object__load + close;
 *             checksum = programs that got an fd, count = 1.
 * ring_count: FD is a BPF_MAP_TYPE_RINGBUF map; one pass = one
 *             ring_buffer__consume() whose callback counts the records.
 * ring_copy:  the same, the callback also copies each record into one
 *             contiguous array (what pybpf's drain() returns).
 *             For both: checksum = sum of each record's first u64, count = records.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "map_common.h"

static int silent(enum libbpf_print_level level, const char *fmt, va_list args)
{
	(void)level; (void)fmt; (void)args;
	return 0;
}

static const char *object_path;

int setup_load(struct bench *b)
{
	(void)b;
	object_path = getenv("PYBPF_BENCH_OBJECT");
	if (!object_path)
		return -EINVAL;
	libbpf_set_print(silent);
	return 0;
}

int op_load(struct bench *b, struct result *r)
{
	struct bpf_object *obj = bpf_object__open_file(object_path, NULL);
	struct bpf_program *prog;
	int err, progs = 0;

	(void)b;
	if (!obj)
		return errno ? errno : EINVAL;
	err = bpf_object__load(obj);
	if (!err)
		bpf_object__for_each_program(prog, obj)
			progs += bpf_program__fd(prog) >= 0;
	bpf_object__close(obj);
	if (err)
		return -err;
	r->checksum = progs;
	r->count = 1;
	return 0;
}

static struct ring_buffer *ring;
static struct result *ring_result;
static char *ring_out;
static size_t ring_room;

static int count_cb(void *ctx, void *data, size_t size)
{
	(void)ctx; (void)size;
	ring_result->checksum += *(const uint64_t *)data;
	ring_result->count++;
	return 0;
}

static int copy_cb(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (ring_room < size)
		return -ENOSPC;
	memcpy(ring_out, data, size);
	ring_result->checksum += *(const uint64_t *)ring_out;
	ring_out += size;
	ring_room -= size;
	ring_result->count++;
	return 0;
}

int setup_ring(struct bench *b, int copy)
{
	ring = ring_buffer__new(b->fd, copy ? copy_cb : count_cb, NULL, NULL);
	return ring ? 0 : -errno;
}

int op_ring(struct bench *b, struct result *r)
{
	int ret;

	ring_result = r;
	ring_out = b->values;   /* entries x value_size bytes: room for one full ring of records */
	ring_room = (size_t)b->entries * b->value_size;
	ret = ring_buffer__consume(ring);
	return ret < 0 ? ret : 0;
}
