/* USDT probes for tests/test_usdt.py: built by the test with <sys/sdt.h>.
 *
 * Reads commands on stdin, one per line:
 *   args N      fire pybpf_test:args N times (12 arguments of every size and sign)
 *   guarded N   run the _ENABLED()-guarded probe site N times
 *   quit
 * and answers each with one line: "ok N G" where G is how many times the guarded
 * site found its semaphore set (so the probe's body ran). */
#define _SDT_HAS_SEMAPHORES 1
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/sdt.h>

unsigned short pybpf_test_guarded_semaphore __attribute__((section(".probes"), used));
unsigned short pybpf_test_args_semaphore __attribute__((section(".probes"), used)); /* not checked */
#define GUARDED_ENABLED() __builtin_expect(pybpf_test_guarded_semaphore, 0)

struct mem { int64_t s64; uint32_t u32; int16_t s16; };

/* volatile sources: the compiler cannot fold the values into $constants */
static volatile int8_t v_s8 = -7;
static volatile uint8_t v_u8 = 250;
static volatile int16_t v_s16 = -30000;
static volatile uint16_t v_u16 = 65000;
static volatile int32_t v_s32 = -2000000000;
static volatile uint32_t v_u32 = 4000000000u;
static volatile int64_t v_s64 = -9000000000000000000LL;
static volatile uint64_t v_u64 = 18000000000000000000ULL;

__attribute__((noinline)) static void fire_args(long round)
{
	int8_t s8 = v_s8; uint8_t u8 = v_u8; int16_t s16 = v_s16; uint16_t u16 = v_u16;
	int32_t s32 = v_s32; uint32_t u32 = v_u32; int64_t s64 = v_s64; uint64_t u64 = v_u64;
	volatile struct mem m = { .s64 = -123456789012LL, .u32 = 3000000000u, .s16 = -2 };
	STAP_PROBE12(pybpf_test, args, s8, u8, s16, u16, s32, u32, s64, u64,
		     m.s64, m.u32, m.s16, round);
}

__attribute__((noinline)) static long fire_guarded(void)
{
	if (GUARDED_ENABLED()) {
		STAP_PROBE(pybpf_test, guarded);
		return 1;
	}
	return 0;
}

int main(void)
{
	char line[128];
	long n, i, ran;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		ran = 0;
		if (sscanf(line, "args %ld", &n) == 1) {
			for (i = 0; i < n; i++)
				fire_args(i);
		} else if (sscanf(line, "guarded %ld", &n) == 1) {
			for (i = 0; i < n; i++)
				ran += fire_guarded();
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			n = -1;
		}
		printf("ok %ld %ld\n", n, ran);
	}
	return 0;
}
