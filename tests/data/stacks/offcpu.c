/* A thread ("offmain") that is off CPU 3/4 of the time in nanosleep() and 1/4 blocked reading
 * a pipe, which another thread ("offwriter") fills 10 ms after being asked to. Runs argv[1]
 * seconds (default 10). Built with frame pointers, so user stacks walk.
 *
 * The split is what the program asks for; on a loaded machine the wake-ups come late and the
 * pipe (two wake-ups a round) takes more. So the program measures its own: after a SIGUSR1 it
 * prints "phases SLEEP_NS PIPE_NS", the time spent in each so far (CLOCK_MONOTONIC). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int ask[2], answer[2];
static volatile sig_atomic_t report;

static void on_usr1(int sig)
{
	report = sig;
}

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

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
	struct timespec start, now, t0, t1, t2;
	long long sleep_ns = 0, pipe_ns = 0;
	sigset_t usr1;
	pthread_t t;

	/* the report signal is the main thread's: the writer starts with it blocked */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	signal(SIGUSR1, on_usr1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	if (pipe(ask) || pipe(answer) || pthread_create(&t, NULL, writer, NULL))
		return 1;
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	prctl(PR_SET_NAME, "offmain");
	printf("ready %d\n", getpid());
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		sleeper();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		pipe_waiter();
		clock_gettime(CLOCK_MONOTONIC, &t2);
		sleep_ns += ns_between(&t0, &t1);
		pipe_ns += ns_between(&t1, &t2);
		if (report) {
			report = 0;
			printf("phases %lld %lld\n", sleep_ns, pipe_ns);
			fflush(stdout);
		}
		now = t2;
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("done\n");
	return 0;
}
