/*
 * <time.h> of the vmrpc guest SDK.  clock() counts processor time as TSC time
 * since boot (the guest has no wall clock).
 */
#ifndef _VMRPC_LIBC_TIME_H
#define _VMRPC_LIBC_TIME_H

#include <stddef.h>

typedef long clock_t;
typedef long time_t;

#define CLOCKS_PER_SEC 1000000L

/* Microseconds since the VM booted; (clock_t)-1 if the TSC frequency is unknown. */
clock_t clock(void);

#endif
