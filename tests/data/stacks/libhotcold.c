/* The shared library half of hotcold.c: the same 3:1 split, in lib_hot() and lib_cold(). */
#include <time.h>

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

volatile unsigned long lib_sink;

__attribute__((noinline)) static void lib_spin(double seconds)
{
	double end = cpu_now() + seconds;
	unsigned long i;

	while (cpu_now() < end)
		for (i = 0; i < 20000; i++)
			lib_sink += i * i;
}

__attribute__((noinline)) void lib_hot(double unit)
{
	lib_spin(3 * unit);
}

__attribute__((noinline)) void lib_cold(double unit)
{
	lib_spin(unit);
}
