/* <stdlib.h> of the vmrpc guest SDK: heap, exit, number parsing, sorting, rand. */
#ifndef _VMRPC_LIBC_STDLIB_H
#define _VMRPC_LIBC_STDLIB_H

#include <stddef.h>

#define EXIT_SUCCESS 0
#define EXIT_FAILURE 1
#define RAND_MAX 0x7fffffff

/* All allocations are 16-byte aligned; NULL on exhaustion.  Thread-safe. */
void *malloc(size_t size);
void free(void *p);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t size);
void *aligned_alloc(size_t align, size_t size);

/* Ends the VM with this exit code; never returns. */
_Noreturn void exit(int code);
/* Prints "abort" and ends the VM with exit code 134 (128 + SIGABRT). */
_Noreturn void abort(void);

/* Bases 0 and 2..36; out-of-range values saturate and set errno to ERANGE. */
long strtol(const char *s, char **end, int base);
unsigned long strtoul(const char *s, char **end, int base);
long long strtoll(const char *s, char **end, int base);
unsigned long long strtoull(const char *s, char **end, int base);
int atoi(const char *s);
long atol(const char *s);
long long atoll(const char *s);

int abs(int v);
long labs(long v);
long long llabs(long long v);

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
void *bsearch(const void *key, const void *base, size_t n, size_t size,
	      int (*cmp)(const void *, const void *));

/*
 * A pseudo-random sequence in [0, RAND_MAX], one for the whole VM (shared by
 * all vCPUs, not thread-safe, like C's); srand(seed) restarts it, the default
 * seed is 1.
 */
int rand(void);
void srand(unsigned seed);

#endif
