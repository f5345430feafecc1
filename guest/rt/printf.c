/*
 * A small printf engine: %d %i %u %x %X %p %s %c %%, flags '-' '0' '+' ' '
 * '#', width and precision (both may be '*'), length modifiers hh h l ll z j t,
 * and %f %F %e %E %g %G (printf_float.c) except in the Linux personality's
 * copy, built without SSE (RT_NO_FLOAT), where they are echoed like unknowns.
 */
#include "internal.h"

#define F_LEFT 1u
#define F_ZERO 2u
#define F_PLUS 4u
#define F_SPACE 8u
#define F_ALT 16u

struct spec {
	unsigned flags;
	int width;
	int prec; /* -1: none */
};

static void pad(struct rt_sink *s, char c, int n)
{
	char buf[16];
	int i;

	for (i = 0; i < (int)sizeof(buf); i++)
		buf[i] = c;
	while (n > 0) {
		int k = n < (int)sizeof(buf) ? n : (int)sizeof(buf);
		s->put(s, buf, (size_t)k);
		n -= k;
	}
}

/* Emits `body` (len bytes) right- or left-justified in the field width. */
static int emit_padded(struct rt_sink *s, const struct spec *sp, const char *body, int len)
{
	int fill = sp->width > len ? sp->width - len : 0;

	if (!(sp->flags & F_LEFT))
		pad(s, ' ', fill);
	s->put(s, body, (size_t)len);
	if (sp->flags & F_LEFT)
		pad(s, ' ', fill);
	return len + fill;
}

static int emit_number(struct rt_sink *s, const struct spec *sp, uint64_t v, int negative,
		       unsigned base, int upper, int is_pointer)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char num[24]; /* 2^64 has 20 decimal digits */
	char prefix[3];
	int nd = 0, np = 0, zeros = 0, total, fill;

	do {
		num[sizeof(num) - 1 - nd++] = digits[v % base];
		v /= base;
	} while (v);
	/* C: precision 0 with value 0 prints no digits. */
	if (sp->prec == 0 && nd == 1 && num[sizeof(num) - 1] == '0' && !is_pointer)
		nd = 0;

	if (negative)
		prefix[np++] = '-';
	else if (sp->flags & F_PLUS)
		prefix[np++] = '+';
	else if (sp->flags & F_SPACE)
		prefix[np++] = ' ';
	if (base == 16 && ((sp->flags & F_ALT) || is_pointer)) {
		prefix[np++] = '0';
		prefix[np++] = upper ? 'X' : 'x';
	}

	if (sp->prec > nd)
		zeros = sp->prec - nd;
	total = np + zeros + nd;
	fill = sp->width > total ? sp->width - total : 0;
	/* '0' pads between prefix and digits, unless '-' or a precision is given. */
	if ((sp->flags & F_ZERO) && !(sp->flags & F_LEFT) && sp->prec < 0) {
		zeros += fill;
		total += fill; /* the return value counts the zeros too */
		fill = 0;
	}

	if (!(sp->flags & F_LEFT))
		pad(s, ' ', fill);
	s->put(s, prefix, (size_t)np);
	pad(s, '0', zeros);
	s->put(s, num + sizeof(num) - nd, (size_t)nd);
	if (sp->flags & F_LEFT)
		pad(s, ' ', fill);
	return total + fill;
}

#ifndef RT_NO_FLOAT
/* A formatted double: sign first, then '0' padding (unless '-', or the value
 * is inf/nan), then the digits; unlike integers, a precision keeps '0' padding. */
static int emit_float(struct rt_sink *s, const struct spec *sp, double v, char conv)
{
	char body[RT_FLOAT_MAX_LEN];
	char sign = 0;
	int negative, len, total, fill, zeros = 0;
	int finite = v - v == 0; /* inf - inf and nan - nan are nan */

	len = rt_format_double(v, conv, sp->prec, (sp->flags & F_ALT) != 0, body, &negative);
	if (negative)
		sign = '-';
	else if (sp->flags & F_PLUS)
		sign = '+';
	else if (sp->flags & F_SPACE)
		sign = ' ';
	total = len + (sign != 0);
	fill = sp->width > total ? sp->width - total : 0;
	if ((sp->flags & F_ZERO) && !(sp->flags & F_LEFT) && finite) {
		zeros = fill;
		fill = 0;
	}
	if (!(sp->flags & F_LEFT))
		pad(s, ' ', fill);
	if (sign)
		s->put(s, &sign, 1);
	pad(s, '0', zeros);
	s->put(s, body, (size_t)len);
	if (sp->flags & F_LEFT)
		pad(s, ' ', fill);
	return total + fill + zeros;
}
#endif

enum length { LEN_HH, LEN_H, LEN_INT, LEN_L, LEN_LL, LEN_Z, LEN_J, LEN_T };

static int64_t signed_arg(va_list *ap, enum length len)
{
	switch (len) {
	case LEN_HH: return (signed char)va_arg(*ap, int);
	case LEN_H: return (short)va_arg(*ap, int);
	case LEN_INT: return va_arg(*ap, int);
	case LEN_L: return va_arg(*ap, long);
	case LEN_LL: return va_arg(*ap, long long);
	case LEN_Z: return (int64_t)va_arg(*ap, size_t);
	case LEN_J: return va_arg(*ap, int64_t);
	case LEN_T: return va_arg(*ap, ptrdiff_t);
	}
	return 0;
}

static uint64_t unsigned_arg(va_list *ap, enum length len)
{
	switch (len) {
	case LEN_HH: return (unsigned char)va_arg(*ap, unsigned);
	case LEN_H: return (unsigned short)va_arg(*ap, unsigned);
	case LEN_INT: return va_arg(*ap, unsigned);
	case LEN_L: return va_arg(*ap, unsigned long);
	case LEN_LL: return va_arg(*ap, unsigned long long);
	case LEN_Z: return va_arg(*ap, size_t);
	case LEN_J: return va_arg(*ap, uint64_t);
	case LEN_T: return (uint64_t)va_arg(*ap, ptrdiff_t);
	}
	return 0;
}

int rt_vformat(struct rt_sink *s, const char *fmt, va_list ap_in)
{
	va_list ap;
	int total = 0;

	/* A va_list copy lets the helpers take it by pointer portably. */
	va_copy(ap, ap_in);
	while (*fmt) {
		struct spec sp = { 0, 0, -1 };
		enum length len = LEN_INT;
		const char *start = fmt;

		if (*fmt != '%') {
			while (*fmt && *fmt != '%')
				fmt++;
			s->put(s, start, (size_t)(fmt - start));
			total += (int)(fmt - start);
			continue;
		}
		fmt++;

		for (;; fmt++) {
			if (*fmt == '-')
				sp.flags |= F_LEFT;
			else if (*fmt == '0')
				sp.flags |= F_ZERO;
			else if (*fmt == '+')
				sp.flags |= F_PLUS;
			else if (*fmt == ' ')
				sp.flags |= F_SPACE;
			else if (*fmt == '#')
				sp.flags |= F_ALT;
			else
				break;
		}
		if (*fmt == '*') {
			sp.width = va_arg(ap, int);
			if (sp.width < 0) {
				sp.flags |= F_LEFT;
				sp.width = -sp.width;
			}
			fmt++;
		} else {
			while (*fmt >= '0' && *fmt <= '9')
				sp.width = sp.width * 10 + (*fmt++ - '0');
		}
		if (*fmt == '.') {
			fmt++;
			sp.prec = 0;
			if (*fmt == '*') {
				sp.prec = va_arg(ap, int);
				if (sp.prec < 0)
					sp.prec = -1;
				fmt++;
			} else {
				while (*fmt >= '0' && *fmt <= '9')
					sp.prec = sp.prec * 10 + (*fmt++ - '0');
			}
		}
		switch (*fmt) {
		case 'h':
			len = (fmt[1] == 'h') ? LEN_HH : LEN_H;
			fmt += (len == LEN_HH) ? 2 : 1;
			break;
		case 'l':
			len = (fmt[1] == 'l') ? LEN_LL : LEN_L;
			fmt += (len == LEN_LL) ? 2 : 1;
			break;
		case 'z': len = LEN_Z; fmt++; break;
		case 'j': len = LEN_J; fmt++; break;
		case 't': len = LEN_T; fmt++; break;
		default: break;
		}

		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = signed_arg(&ap, len);
			uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
			total += emit_number(s, &sp, mag, v < 0, 10, 0, 0);
			break;
		}
		case 'u':
			total += emit_number(s, &sp, unsigned_arg(&ap, len), 0, 10, 0, 0);
			break;
		case 'x':
		case 'X':
			total += emit_number(s, &sp, unsigned_arg(&ap, len), 0, 16, *fmt == 'X', 0);
			break;
		case 'p':
			total += emit_number(s, &sp, (uint64_t)(uintptr_t)va_arg(ap, void *), 0, 16, 0, 1);
			break;
#ifndef RT_NO_FLOAT
		case 'f':
		case 'F':
		case 'e':
		case 'E':
		case 'g':
		case 'G':
			/* 'l' (%lf) changes nothing: floats are promoted to double. */
			total += emit_float(s, &sp, va_arg(ap, double), *fmt);
			break;
#endif
		case 'c': {
			char c = (char)va_arg(ap, int);
			total += emit_padded(s, &sp, &c, 1);
			break;
		}
		case 's': {
			const char *str = va_arg(ap, const char *);
			int n = 0;
			if (!str)
				str = "(null)";
			while (str[n] && (sp.prec < 0 || n < sp.prec))
				n++;
			total += emit_padded(s, &sp, str, n);
			break;
		}
		case '%':
			s->put(s, "%", 1);
			total++;
			break;
		case '\0':
			/* A lone '%' at the end: print it rather than read past the NUL. */
			s->put(s, start, (size_t)(fmt - start));
			total += (int)(fmt - start);
			continue;
		default:
			/* Unknown conversion: echo it so the mistake is visible. */
			s->put(s, start, (size_t)(fmt + 1 - start));
			total += (int)(fmt + 1 - start);
			break;
		}
		fmt++;
	}
	va_end(ap);
	return total;
}

struct buf_sink {
	struct rt_sink base;
	char *buf;
	size_t size; /* capacity including the NUL */
	size_t used;
};

static void buf_put(struct rt_sink *s, const char *str, size_t n)
{
	struct buf_sink *b = (struct buf_sink *)s;

	/* Keep one byte for the NUL; drop what does not fit. */
	while (n && b->used + 1 < b->size) {
		b->buf[b->used++] = *str++;
		n--;
	}
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct buf_sink b = { { buf_put }, buf, size, 0 };
	int n = rt_vformat(&b.base, fmt, ap);

	if (size)
		buf[b.used] = '\0';
	return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* No bound: the caller promises the buffer is large enough, as C's sprintf does. */
int vsprintf(char *buf, const char *fmt, va_list ap)
{
	return vsnprintf(buf, (size_t)-1, fmt, ap);
}

int sprintf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsprintf(buf, fmt, ap);
	va_end(ap);
	return n;
}
