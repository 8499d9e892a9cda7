/* 50 distinct functions, f00..f49; after a line on stdin, function i is called i + 1 times.
   Built by tests/test_new_kinds.py to check that one uprobe_multi link counts each of them. */
#include <stdio.h>

static volatile int sink;

#define F(n) __attribute__((noinline, used)) void f##n(void) { sink += 1; __asm__ volatile("" ::: "memory"); }
F(00) F(01) F(02) F(03) F(04) F(05) F(06) F(07) F(08) F(09)
F(10) F(11) F(12) F(13) F(14) F(15) F(16) F(17) F(18) F(19)
F(20) F(21) F(22) F(23) F(24) F(25) F(26) F(27) F(28) F(29)
F(30) F(31) F(32) F(33) F(34) F(35) F(36) F(37) F(38) F(39)
F(40) F(41) F(42) F(43) F(44) F(45) F(46) F(47) F(48) F(49)

static void (*const funcs[50])(void) = {
	f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
	f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31, f32, f33, f34, f35, f36, f37, f38, f39,
	f40, f41, f42, f43, f44, f45, f46, f47, f48, f49,
};

int main(void)
{
	char line[16];

	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int i = 0; i < 50; i++)
		for (int k = 0; k <= i; k++)
			funcs[i]();
	printf("done %d\n", sink);
	return 0;
}
