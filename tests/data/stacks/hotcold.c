/* A program whose CPU time splits 3:1 between hot() and cold(), both called from main().
 * Built with frame pointers so that BPF's user stack walk sees main -> hot / main -> cold.
 * Each call spins for its share of *this thread's CPU time* (not wall time), so the split
 * holds on a busy machine; the share unit is random each round, so that it cannot alias
 * with the sampling period. Runs for argv[1] seconds of wall time (default 10), then exits.
 * With argv[2] = "lib", the work is done by libhotcold.so's lib_hot()/lib_cold() instead,
 * dlopen()ed at run time (so it lands at a base chosen then). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

volatile unsigned long sink;

__attribute__((noinline)) void hot(double unit)
{
	double end = now(CLOCK_THREAD_CPUTIME_ID) + 3 * unit;
	unsigned long i;

	while (now(CLOCK_THREAD_CPUTIME_ID) < end)
		for (i = 0; i < 20000; i++)
			sink += i * i;
}

__attribute__((noinline)) void cold(double unit)
{
	double end = now(CLOCK_THREAD_CPUTIME_ID) + unit;
	unsigned long i;

	while (now(CLOCK_THREAD_CPUTIME_ID) < end)
		for (i = 0; i < 20000; i++)
			sink += i * i;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10.0;
	double end = now(CLOCK_MONOTONIC) + seconds;
	void (*work_hot)(double) = hot, (*work_cold)(double) = cold;
	unsigned int seed = getpid();

	if (argc > 2 && strcmp(argv[2], "lib") == 0) {
		char path[4096];
		void *lib;

		snprintf(path, sizeof(path), "%s", argv[0]);
		strcpy(strrchr(path, '/') ? strrchr(path, '/') + 1 : path, "libhotcold.so");
		lib = dlopen(path, RTLD_NOW);
		if (!lib) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			return 1;
		}
		work_hot = (void (*)(double))dlsym(lib, "lib_hot");
		work_cold = (void (*)(double))dlsym(lib, "lib_cold");
		if (!work_hot || !work_cold)
			return 1;
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	while (now(CLOCK_MONOTONIC) < end) {
		/* a random unit (0.2..1.2 ms) each round: a fixed 4 ms cycle would alias with a
		 * ~2 ms sampling period and bias the split one way or the other */
		double unit = 0.0002 + 0.001 * (rand_r(&seed) / (double)RAND_MAX);

		work_hot(unit);
		work_cold(unit);
	}
	printf("done %lu\n", sink);
	return 0;
}
