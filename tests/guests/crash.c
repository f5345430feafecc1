/*
 * Crashes on purpose, in the way argv[1] names, for tests/test_crash_report.py.
 * Each faulting statement carries a "CRASH:<mode>" marker comment so the test
 * can find its line number.
 */
#include <stdio.h>
#include <string.h>

/* volatile and noinline: the compiler must neither fold nor move the faults. */
static volatile int zero;

__attribute__((noinline)) static int read_null(void)
{
	volatile int *p = NULL;

	return *p; /* CRASH:null */
}

__attribute__((noinline)) static void write_null_member(void)
{
	struct node {
		long key;
		long value;
	} volatile *volatile n = NULL;

	n->value = 7; /* CRASH:member */
}

__attribute__((noinline)) static int divide(int a)
{
	return a / zero; /* CRASH:div0 */
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	printf("crashing: %s\n", mode);
	if (!strcmp(mode, "null"))
		return read_null();
	if (!strcmp(mode, "member"))
		write_null_member();
	if (!strcmp(mode, "div0"))
		return divide(argc);
	if (!strcmp(mode, "ud2"))
		__asm__ volatile("ud2"); /* CRASH:ud2 */
	return 0;
}
