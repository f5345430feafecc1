/* <unistd.h> of the vmrpc guest SDK: sleeping.  Both spin on the TSC. */
#ifndef _VMRPC_LIBC_UNISTD_H
#define _VMRPC_LIBC_UNISTD_H

/* Returns 0 (never interrupted). */
unsigned sleep(unsigned seconds);
/* Returns 0, or -1 with errno EINVAL if the TSC frequency is unknown. */
int usleep(unsigned long usec);

#endif
