/* <string.h> of the vmrpc guest SDK. */
#ifndef _VMRPC_LIBC_STRING_H
#define _VMRPC_LIBC_STRING_H

#include <stddef.h>
#include <strings.h> /* strcasecmp, as glibc's <string.h> also declares it */

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);

size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strcpy(char *dst, const char *src);
char *strncpy(char *dst, const char *src, size_t n);
char *strcat(char *dst, const char *src);
char *strncat(char *dst, const char *src, size_t n);
char *strchr(const char *s, int c);
char *strrchr(const char *s, int c);
char *strstr(const char *haystack, const char *needle);
/* Reentrant tokenizer; *save keeps the position between calls. */
char *strtok_r(char *s, const char *delim, char **save);
/* Copies into malloc'd memory; NULL (errno ENOMEM) when the heap is full. */
char *strdup(const char *s);
char *strndup(const char *s, size_t n);
/* "ECONNREFUSED (connection refused)"; never NULL. */
char *strerror(int err);

#endif
