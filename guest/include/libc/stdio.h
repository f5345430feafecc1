/*
 * <stdio.h> of the vmrpc guest SDK: formatted output to the console (COM1).
 * There are no files and no input; printf holds the console lock for a whole
 * call, so lines from different vCPUs do not interleave.  No floating point
 * conversions (%f, %e, %g): guests are built without SSE.
 */
#ifndef _VMRPC_LIBC_STDIO_H
#define _VMRPC_LIBC_STDIO_H

#include <stdarg.h>
#include <stddef.h>

#define EOF (-1)

int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
int sprintf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vsprintf(char *buf, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* Writes s and a newline. */
int puts(const char *s);
int putchar(int c);

#endif
