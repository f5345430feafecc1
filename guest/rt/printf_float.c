/*
 * printf's %f %e %g (and %F %E %G): the exact decimal value of a double,
 * rounded half to even at the requested digit, as glibc prints it in the
 * default rounding mode.
 *
 * A double is m * 2^e with m < 2^53.  Its integer part is a big integer of at
 * most 1024 bits, turned into decimal by repeated division by 10^9; its
 * fraction has at most 1074 bits, and each multiplication by 10 pushes the next
 * decimal digit out of the top.  Both are exact, so the rounding is too.
 *
 * Built only where floating point is allowed (not in the Linux personality's
 * copy of the runtime, see guest/Makefile's NOFP_CFLAGS).
 */
#ifndef RT_NO_FLOAT
#include "internal.h"

#define INT_LIMBS 36  /* 2^1024 needs 32 limbs of 32 bits, plus the mantissa's */
#define FRAC_LIMBS 36 /* 1074 fraction bits, rounded up to whole limbs */

/* The decimal digits of a value, 0.d[0]d[1]... x 10^point, with no leading
 * zero, plus whether anything nonzero follows the digits produced. */
struct decimal {
	char d[RT_FLOAT_MAX_PREC + 330];
	int n;
	int point;
	int sticky;
};

/* Appends the integer part's decimal digits (none for 0). */
static void integer_digits(struct decimal *dec, uint64_t mant, int shift)
{
	uint32_t limb[INT_LIMBS] = { 0 };
	char rev[INT_LIMBS * 10];
	int nlimbs, nrev = 0, word = shift / 32, bit = shift % 32;

	/* mant << shift, in 32-bit limbs, least significant first. */
	limb[word] = (uint32_t)(mant << bit);
	limb[word + 1] = (uint32_t)(bit ? (mant >> (32 - bit)) : (mant >> 32));
	limb[word + 2] = (uint32_t)(bit ? (mant >> (64 - bit)) : 0);
	nlimbs = word + 3;
	while (nlimbs > 0 && !limb[nlimbs - 1])
		nlimbs--;
	while (nlimbs > 0) {
		uint64_t rem = 0;
		int i;

		for (i = nlimbs - 1; i >= 0; i--) {
			uint64_t cur = (rem << 32) | limb[i];
			limb[i] = (uint32_t)(cur / 1000000000u);
			rem = cur % 1000000000u;
		}
		while (nlimbs > 0 && !limb[nlimbs - 1])
			nlimbs--;
		for (i = 0; i < 9 && (nlimbs > 0 || rem); i++) {
			rev[nrev++] = (char)('0' + rem % 10);
			rem /= 10;
		}
	}
	while (nrev > 0)
		dec->d[dec->n++] = rev[--nrev];
	dec->point = dec->n;
}

/* Appends fraction digits until `enough` says stop or the fraction is spent.
 * The fraction is frac / 2^bits, with bits a multiple of 32 (frac was shifted). */
static void fraction_digits(struct decimal *dec, uint32_t *frac, int nlimbs, int fixed, int prec)
{
	int lowest = 0;

	for (;;) {
		uint64_t carry = 0;
		int i, want = fixed ? dec->point + prec + 1 : prec + 2;

		while (lowest < nlimbs && !frac[lowest])
			lowest++;
		if (lowest == nlimbs)
			return; /* exact: nothing left */
		if (dec->n >= want || dec->n >= (int)sizeof(dec->d)) {
			dec->sticky = 1;
			return;
		}
		for (i = lowest; i < nlimbs; i++) {
			uint64_t cur = (uint64_t)frac[i] * 10 + carry;
			frac[i] = (uint32_t)cur;
			carry = cur >> 32;
		}
		if (dec->n == 0 && carry == 0)
			dec->point--; /* a leading zero of the fraction */
		else
			dec->d[dec->n++] = (char)('0' + carry);
	}
}

static void to_decimal(struct decimal *dec, double v, int fixed, int prec)
{
	union { double f; uint64_t u; } bits = { .f = v };
	int biased = (int)((bits.u >> 52) & 0x7ff);
	uint64_t mant = bits.u & ((1ull << 52) - 1);
	int e;

	dec->n = 0;
	dec->point = 0;
	dec->sticky = 0;
	if (biased == 0 && mant == 0)
		return; /* zero */
	if (biased) {
		mant |= 1ull << 52;
		e = biased - 1075;
	} else {
		e = -1074; /* subnormal */
	}
	if (e >= 0) {
		integer_digits(dec, mant, e);
		return;
	}
	{
		int fbits = -e;
		uint32_t frac[FRAC_LIMBS + 1] = { 0 };
		int nlimbs = (fbits + 31) / 32, up = nlimbs * 32 - fbits;
		uint64_t ipart = fbits >= 64 ? 0 : mant >> fbits;
		uint64_t fpart = fbits >= 64 ? mant : mant & ((1ull << fbits) - 1);
		int word, bit;

		if (ipart)
			integer_digits(dec, ipart, 0);
		/* fpart << up puts the binary point at a limb boundary; fpart has at
		 * most 53 bits, so it spans three limbs at most. */
		word = up / 32;
		bit = up % 32;
		frac[word] = (uint32_t)(fpart << bit);
		frac[word + 1] = (uint32_t)(bit ? fpart >> (32 - bit) : fpart >> 32);
		if (word + 2 <= FRAC_LIMBS)
			frac[word + 2] = (uint32_t)(bit ? fpart >> (64 - bit) : 0);
		fraction_digits(dec, frac, nlimbs, fixed, prec);
	}
}

/* Keeps the first `keep` digits, rounding half to even on what follows. */
static void round_at(struct decimal *dec, int keep)
{
	int up, i, rest = dec->sticky;

	if (keep >= dec->n)
		return;
	if (keep < 0) {
		dec->n = 0; /* below half of the last place: rounds to zero */
		return;
	}
	for (i = keep + 1; i < dec->n; i++)
		rest |= dec->d[i] != '0';
	up = dec->d[keep] > '5' ||
	     (dec->d[keep] == '5' && (rest || (keep > 0 && (dec->d[keep - 1] - '0') % 2)));
	dec->n = keep;
	if (!up)
		goto trim;
	for (i = keep - 1; i >= 0; i--) {
		if (dec->d[i] != '9') {
			dec->d[i]++;
			goto trim;
		}
		dec->d[i] = '0';
	}
	/* 99.9 -> 100: a new leading digit. */
	for (i = dec->n; i > 0; i--)
		dec->d[i] = dec->d[i - 1];
	dec->d[0] = '1';
	dec->n++;
	dec->point++;
trim:
	while (dec->n > 0 && dec->d[dec->n - 1] == '0')
		dec->n--;
	if (dec->n == 0)
		dec->point = 0;
}

static char digit_at(const struct decimal *dec, int i)
{
	return i >= 0 && i < dec->n ? dec->d[i] : '0';
}

static int put_fixed(char *out, const struct decimal *dec, int prec, int alt)
{
	int len = 0, i;

	if (dec->point <= 0)
		out[len++] = '0';
	for (i = 0; i < dec->point; i++)
		out[len++] = digit_at(dec, i);
	if (prec > 0 || alt)
		out[len++] = '.';
	for (i = 0; i < prec; i++)
		out[len++] = digit_at(dec, dec->point + i);
	return len;
}

static int put_exp(char *out, const struct decimal *dec, int prec, int alt, int upper)
{
	int len = 0, i, x = dec->n ? dec->point - 1 : 0;
	unsigned ax = (unsigned)(x < 0 ? -x : x);
	char ex[4];
	int nex = 0;

	out[len++] = digit_at(dec, 0);
	if (prec > 0 || alt)
		out[len++] = '.';
	for (i = 1; i <= prec; i++)
		out[len++] = digit_at(dec, i);
	out[len++] = upper ? 'E' : 'e';
	out[len++] = x < 0 ? '-' : '+';
	do {
		ex[nex++] = (char)('0' + ax % 10);
		ax /= 10;
	} while (ax);
	if (nex < 2)
		ex[nex++] = '0';
	while (nex > 0)
		out[len++] = ex[--nex];
	return len;
}

/* %g without '#': no trailing zeros in the fraction, no lone point. */
static int strip_zeros(char *out, int len)
{
	int dot = -1, end = len, i;

	for (i = 0; i < len && out[i] != 'e' && out[i] != 'E'; i++)
		if (out[i] == '.')
			dot = i;
	if (dot < 0)
		return len;
	end = i;
	while (end > dot + 1 && out[end - 1] == '0')
		end--;
	if (end == dot + 1)
		end = dot;
	for (; i < len; i++)
		out[end++] = out[i];
	return end;
}

int rt_format_double(double v, char conv, int prec, int alt, char *out, int *negative)
{
	union { double f; uint64_t u; } bits = { .f = v };
	int upper = conv == 'F' || conv == 'E' || conv == 'G';
	char lower = (char)(upper ? conv - 'A' + 'a' : conv);
	struct decimal dec;
	int len;

	*negative = (int)(bits.u >> 63);
	if (((bits.u >> 52) & 0x7ff) == 0x7ff) {
		const char *word = (bits.u << 12) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf");
		out[0] = word[0];
		out[1] = word[1];
		out[2] = word[2];
		return 3;
	}
	if (prec < 0)
		prec = 6;
	if (prec > RT_FLOAT_MAX_PREC)
		prec = RT_FLOAT_MAX_PREC;
	if (lower == 'f') {
		to_decimal(&dec, v, 1, prec);
		round_at(&dec, dec.point + prec);
		return put_fixed(out, &dec, prec, alt);
	}
	if (lower == 'e') {
		to_decimal(&dec, v, 0, prec);
		round_at(&dec, prec + 1);
		return put_exp(out, &dec, prec, alt, upper);
	}
	/* %g: P significant digits; fixed notation when -4 <= X < P. */
	if (prec == 0)
		prec = 1;
	to_decimal(&dec, v, 0, prec - 1);
	round_at(&dec, prec);
	{
		int x = dec.n ? dec.point - 1 : 0;

		if (x >= -4 && x < prec)
			len = put_fixed(out, &dec, prec - 1 - x, alt);
		else
			len = put_exp(out, &dec, prec - 1, alt, upper);
	}
	return alt ? len : strip_zeros(out, len);
}
#endif
