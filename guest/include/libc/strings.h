/* <strings.h> of the vmrpc guest SDK: ASCII case-insensitive comparison. */
#ifndef _VMRPC_LIBC_STRINGS_H
#define _VMRPC_LIBC_STRINGS_H

#include <stddef.h>

int strcasecmp(const char *a, const char *b);
int strncasecmp(const char *a, const char *b, size_t n);

#endif
