/*
 * Exercises the SDK's C library with inputs from argv and prints the results
 * one per line, for tests/test_guest_sdk.py to check against Python's own.
 * Plain C: only standard headers, no <vmrpc.h>.
 *
 *   qsort N...           sorted values, then bsearch of each value and of a missing one
 *   strtoll BASE S...    "value errno end" per S, for strtoll then strtoull
 *   ctype                one line per c in -1..255: class bits, tolower, toupper
 *   strings A B          strcasecmp/strncasecmp signs, strnlen, memchr, strdup, strcat
 *   strtok DELIMS S      the tokens, one per line
 *   sprintf N S          sprintf/vsprintf of a few formats with N and S
 *   abs N                abs/labs/llabs of N (as int, long, long long)
 *   rand SEED K          RAND_MAX, then K values after srand(SEED)
 *   clock US             CLOCKS_PER_SEC and whether clock() advanced by >= US after usleep(US)
 *   float FMT SEED N HEX...  bits, then snprintf(FMT, d), per d given as its 64-bit
 *                        pattern in hex and for N more from a PRNG seeded with SEED
 *   series N             double arithmetic (a sum, a product, Newton's square root)
 *                        printed with %.17g, with console output between the steps
 *   assert               assert(argc < 0) fails
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static int check_qsort(int n, char **args)
{
	long *v = calloc((size_t)n, sizeof(long));
	long missing = LONG_MIN;

	if (!v)
		return 2;
	for (int i = 0; i < n; i++)
		v[i] = strtol(args[i], NULL, 10);
	qsort(v, (size_t)n, sizeof(long), cmp_long);
	printf("sorted");
	for (int i = 0; i < n; i++)
		printf(" %ld", v[i]);
	printf("\n");
	for (int i = 0; i < n; i++) {
		long *hit = bsearch(&v[i], v, (size_t)n, sizeof(long), cmp_long);

		printf("found %ld %s\n", v[i], hit && *hit == v[i] ? "yes" : "no");
		if (v[i] >= missing)
			missing = v[i] + 1;
	}
	printf("missing %s\n", bsearch(&missing, v, (size_t)n, sizeof(long), cmp_long) ? "found" : "null");
	free(v);
	return 0;
}

static int check_strtoll(int base, int n, char **args)
{
	for (int i = 0; i < n; i++) {
		char *end;
		long long s;
		unsigned long long u;

		errno = 0;
		s = strtoll(args[i], &end, base);
		printf("ll %lld %d %ld\n", s, errno, (long)(end - args[i]));
		errno = 0;
		u = strtoull(args[i], &end, base);
		printf("ull %llu %d %ld\n", u, errno, (long)(end - args[i]));
	}
	return 0;
}

static int check_ctype(void)
{
	int (*const classes[])(int) = { isalnum, isalpha, isblank, iscntrl, isdigit, isgraph,
					islower, isprint, ispunct, isspace, isupper, isxdigit };

	for (int c = -1; c < 256; c++) {
		unsigned bits = 0;

		for (unsigned k = 0; k < sizeof(classes) / sizeof(classes[0]); k++)
			if (classes[k](c))
				bits |= 1u << k;
		printf("%d %u %d %d\n", c, bits, tolower(c), toupper(c));
	}
	return 0;
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

static int check_strings(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *joined = malloc(la + lb + 1);
	char *copy = strdup(a), *part = strndup(b, 2);
	const char *at = memchr(a, 'x', la);

	if (!joined || !copy || !part)
		return 2;
	printf("strcasecmp %d\n", sign(strcasecmp(a, b)));
	for (size_t n = 0; n <= (la > lb ? la : lb) + 1; n++)
		printf("strncasecmp %zu %d\n", n, sign(strncasecmp(a, b, n)));
	printf("strnlen %zu %zu %zu\n", strnlen(a, 0), strnlen(a, 3), strnlen(a, 1000));
	printf("memchr %ld\n", at ? (long)(at - a) : -1L);
	printf("strdup [%s] %d\n", copy, copy != a);
	printf("strndup [%s]\n", part);
	joined[0] = '\0';
	strcat(joined, a);
	strncat(joined, b, 3);
	printf("strcat [%s]\n", joined);
	free(joined);
	free(copy);
	free(part);
	return 0;
}

static int check_strtok(const char *delims, char *s)
{
	char *save;

	for (char *t = strtok_r(s, delims, &save); t; t = strtok_r(NULL, delims, &save))
		printf("token [%s]\n", t);
	printf("done\n");
	return 0;
}

static int format_v(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsprintf(buf, fmt, ap);
	va_end(ap);
	return n;
}

static int check_sprintf(long n, const char *s)
{
	char buf[256];
	int len;

	len = sprintf(buf, "%5ld|%-8s|%x|%+d|%08ld|%.3ld", n, s, (unsigned)n, (int)n, n, n);
	printf("sprintf %d [%s]\n", len, buf);
	len = format_v(buf, "%s-%c-%lu", s, s[0], (unsigned long)n);
	printf("vsprintf %d [%s]\n", len, buf);
	return 0;
}

static int check_abs(const char *arg)
{
	long long v = strtoll(arg, NULL, 10);

	printf("abs %d %ld %lld\n", abs((int)v), labs((long)v), llabs(v));
	return 0;
}

static int check_rand(unsigned seed, int k)
{
	printf("RAND_MAX %d\n", RAND_MAX);
	srand(seed);
	for (int i = 0; i < k; i++)
		printf("rand %d\n", rand());
	return 0;
}

static int check_clock(unsigned long us)
{
	clock_t before = clock(), after;

	if (usleep(us) != 0)
		return 3;
	after = clock();
	printf("CLOCKS_PER_SEC %ld\n", (long)CLOCKS_PER_SEC);
	printf("advanced %s\n", before >= 0 && after - before >= (clock_t)us ? "enough" : "too little");
	return 0;
}

/* One line per double: its bits, then snprintf(fmt)'s length and text.  The doubles
 * are those given in hex, then `count` more from a xorshift64 seeded with `seed`:
 * every other one random bits, the rest with exponents within 2^+-40. */
static void print_float(const char *fmt, uint64_t bits)
{
	char buf[1200];
	union { uint64_t u; double d; } v = { .u = bits };
	int len = snprintf(buf, sizeof(buf), fmt, v.d);

	printf("%016llx %d [%s]\n", (unsigned long long)bits, len, buf);
}

static int check_float(const char *fmt, uint64_t seed, long count, int n, char **hex)
{
	uint64_t x = seed | 1;

	for (int i = 0; i < n; i++)
		print_float(fmt, strtoull(hex[i], NULL, 16));
	for (long i = 0; i < count; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (i % 2)
			print_float(fmt, (x & 0x800fffffffffffffull) | ((1023 - 40 + x % 80) << 52));
		else
			print_float(fmt, x);
	}
	return 0;
}

/* The same operations in the same order as the test's Python, so IEEE-754 gives
 * the same bits; the printf between steps exits to the VMM each time, so the
 * vector registers must survive exits. */
static int check_series(long n)
{
	double sum = 0.0, product = 1.0, x = 2.0;

	for (long k = 1; k <= n; k++) {
		sum += 1.0 / ((double)k * (double)k);
		product *= 1.0 + 1.0 / (double)(k * 1000);
		if (k % (n / 4 > 0 ? n / 4 : 1) == 0)
			printf("step %ld %.17g %.17g\n", k, sum, product);
	}
	for (int i = 0; i < 8; i++) {
		x = 0.5 * (x + 2.0 / x);
		printf("newton %d %.17g\n", i, x);
	}
	return 0;
}

int main(int argc, char **argv)
{
	bool known = argc > 1;
	const char *mode = known ? argv[1] : "";

	if (!strcmp(mode, "qsort"))
		return check_qsort(argc - 2, argv + 2);
	if (!strcmp(mode, "strtoll") && argc > 2)
		return check_strtoll(atoi(argv[2]), argc - 3, argv + 3);
	if (!strcmp(mode, "ctype"))
		return check_ctype();
	if (!strcmp(mode, "strings") && argc == 4)
		return check_strings(argv[2], argv[3]);
	if (!strcmp(mode, "strtok") && argc == 4)
		return check_strtok(argv[2], argv[3]);
	if (!strcmp(mode, "sprintf") && argc == 4)
		return check_sprintf(atol(argv[2]), argv[3]);
	if (!strcmp(mode, "abs") && argc == 3)
		return check_abs(argv[2]);
	if (!strcmp(mode, "rand") && argc == 4)
		return check_rand((unsigned)strtoul(argv[2], NULL, 10), atoi(argv[3]));
	if (!strcmp(mode, "clock") && argc == 3)
		return check_clock(strtoul(argv[2], NULL, 10));
	if (!strcmp(mode, "float") && argc > 4)
		return check_float(argv[2], strtoull(argv[3], NULL, 10), atol(argv[4]), argc - 5,
				   argv + 5);
	if (!strcmp(mode, "series") && argc == 3)
		return check_series(atol(argv[2]));
	if (!strcmp(mode, "assert"))
		assert(argc < 0);
	printf("usage: libc_check MODE ARGS...\n");
	return 1;
}
