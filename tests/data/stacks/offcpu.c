/* A thread ("offmain") that is off CPU 3/4 of the time in nanosleep() and 1/4 blocked reading
 * a pipe, which another thread ("offwriter") fills 10 ms after being asked to. Runs argv[1]
 * seconds (default 10). Built with frame pointers, so user stacks walk. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int ask[2], answer[2];

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *writer(void *arg)
{
	char c;

	prctl(PR_SET_NAME, "offwriter");
	while (read(ask[0], &c, 1) == 1) {
		sleep_ms(10);
		if (write(answer[1], &c, 1) != 1)
			break;
	}
	return arg;
}

__attribute__((noinline)) void sleeper(void)
{
	sleep_ms(30);
}

__attribute__((noinline)) void pipe_waiter(void)
{
	char c = 'x';

	if (write(ask[1], &c, 1) != 1 || read(answer[0], &c, 1) != 1)
		exit(1);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10.0;
	struct timespec start, now;
	pthread_t t;

	if (pipe(ask) || pipe(answer) || pthread_create(&t, NULL, writer, NULL))
		return 1;
	prctl(PR_SET_NAME, "offmain");
	printf("ready %d\n", getpid());
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		sleeper();
		pipe_waiter();
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("done\n");
	return 0;
}
