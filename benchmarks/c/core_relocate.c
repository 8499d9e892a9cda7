// SPDX-License-Identifier: GPL-2.0
/* libbpf's own CO-RE step for benchmarks/check_bench.py: for every object named on the
 * command line, open it with btf_custom_path=TARGET and load it with every program bound to
 * a network device that does not exist. libbpf creates the maps, relocates every program
 * (CO-RE against TARGET, calls, data) and only then asks the kernel to load the first
 * program, which the kernel refuses before verifying anything (no such device). What is
 * timed is libbpf's open + relocation of the whole corpus, with the target BTF parsed for
 * each object as libbpf does. Prints: objects, seconds.
 *
 *   core_relocate TARGET.btf OBJ.bpf.o...
 */
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int loud(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	struct timespec a, b;
	int i, done = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: %s TARGET.btf OBJ.bpf.o...\n", argv[0]);
		return 2;
	}
	libbpf_set_print(getenv("CORE_RELOCATE_LOG") ? loud : quiet); /* the log shows each relocation */
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 2; i < argc; i++) {
		LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = argv[1]);
		struct bpf_object *obj = bpf_object__open_file(argv[i], &opts);
		struct bpf_program *prog;

		if (!obj) {
			fprintf(stderr, "%s: open failed\n", argv[i]);
			continue;
		}
		bpf_object__for_each_program(prog, obj)
			bpf_program__set_ifindex(prog, 0x7fffffff);
		bpf_object__load(obj); /* fails at the first program load, after relocation */
		bpf_object__close(obj);
		done++;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%d %.6f\n", done, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
