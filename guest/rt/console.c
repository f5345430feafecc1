/*
 * Console output.  Each MMIO write is a VM exit (~30 us on PVM), so text goes
 * out a buffer at a time through the VMM's console-write register (one exit
 * per buffer) rather than byte by byte through the UART.  One lock covers a
 * whole printf/puts call so concurrent vCPUs never interleave text.
 */
#include "internal.h"

static rt_spinlock_t console_lock = RT_SPINLOCK_INIT;

void rt_console_init(void)
{
	rt_spin_init(&console_lock);
}

static void uart_write(const char *s, size_t n)
{
	while (n) {
		size_t k = n < 0xffff ? n : 0xffff;

		mmio_write64(VMRPC_MMIO_CONSOLE_WRITE, VMRPC_CONSOLE_WRITE((uintptr_t)s, k));
		s += k;
		n -= k;
	}
}

/* Collects formatted text and writes it out in chunks, under the lock. */
struct console_sink {
	struct rt_sink base;
	size_t used;
	char buf[256];
};

static void console_flush(struct console_sink *c)
{
	uart_write(c->buf, c->used);
	c->used = 0;
}

static void console_put(struct rt_sink *s, const char *str, size_t n)
{
	struct console_sink *c = (struct console_sink *)s;

	while (n) {
		size_t k = sizeof(c->buf) - c->used;

		if (k > n)
			k = n;
		memcpy(c->buf + c->used, str, k);
		c->used += k;
		str += k;
		n -= k;
		if (c->used == sizeof(c->buf))
			console_flush(c);
	}
}

int vprintf(const char *fmt, va_list ap)
{
	struct console_sink c;
	int n;

	c.base.put = console_put;
	c.used = 0;
	rt_spin_lock(&console_lock);
	n = rt_vformat(&c.base, fmt, ap);
	console_flush(&c);
	rt_spin_unlock(&console_lock);
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int puts(const char *s)
{
	return printf("%s\n", s);
}

int putchar(int c)
{
	char ch = (char)c;

	rt_spin_lock(&console_lock);
	uart_write(&ch, 1);
	rt_spin_unlock(&console_lock);
	return (unsigned char)c;
}
