/*
 * Number parsing: strtol/strtoul/strtoll/strtoull (bases 0 and 2..36;
 * out-of-range values saturate and set errno to ERANGE), atoi/atol/atoll.
 * long and long long are both 64 bits here (LP64).
 */
#include "internal.h"

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

static int is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * Parses the magnitude; *neg receives the sign.  Saturates at ULONG_MAX and
 * reports overflow through *ovf.  *end points past the last digit used, or at
 * s itself when there were no digits (as C requires).
 */
static unsigned long parse(const char *s, char **end, int base, int *neg, int *ovf)
{
	const char *p = s;
	unsigned long v = 0;
	int any = 0;

	*neg = 0;
	*ovf = 0;
	while (is_space(*p))
		p++;
	if (*p == '+' || *p == '-')
		*neg = (*p++ == '-');
	if ((base == 0 || base == 16) && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
	    digit_value(p[2]) < 16) {
		p += 2;
		base = 16;
	} else if (base == 0) {
		base = (p[0] == '0') ? 8 : 10;
	}
	if (base < 2 || base > 36) {
		if (end)
			*end = (char *)s;
		return 0;
	}
	for (; digit_value(*p) < base; p++) {
		unsigned d = (unsigned)digit_value(*p);

		any = 1;
		if (v > ((unsigned long)-1 - d) / (unsigned)base)
			*ovf = 1;
		else
			v = v * (unsigned)base + d;
	}
	if (end)
		*end = (char *)(any ? p : s);
	return *ovf ? (unsigned long)-1 : v;
}

unsigned long strtoul(const char *s, char **end, int base)
{
	int neg, ovf;
	unsigned long v = parse(s, end, base, &neg, &ovf);

	if (ovf) {
		errno = ERANGE;
		return v; /* ULONG_MAX, whatever the sign (as C says) */
	}
	return neg ? 0 - v : v;
}

long strtol(const char *s, char **end, int base)
{
	int neg, ovf;
	unsigned long v = parse(s, end, base, &neg, &ovf);
	const unsigned long lmax = (unsigned long)-1 >> 1;

	if (neg) {
		if (ovf || v > lmax + 1) {
			errno = ERANGE;
			return -(long)lmax - 1;
		}
		return (long)(0 - v);
	}
	if (ovf || v > lmax) {
		errno = ERANGE;
		return (long)lmax;
	}
	return (long)v;
}

_Static_assert(sizeof(long long) == sizeof(long), "LP64: strtoll is strtol");

long long strtoll(const char *s, char **end, int base)
{
	return strtol(s, end, base);
}

unsigned long long strtoull(const char *s, char **end, int base)
{
	return strtoul(s, end, base);
}

int atoi(const char *s)
{
	return (int)strtol(s, NULL, 10);
}

long atol(const char *s)
{
	return strtol(s, NULL, 10);
}

long long atoll(const char *s)
{
	return strtol(s, NULL, 10);
}
