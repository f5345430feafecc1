/* errno: one per thread, so a call never clobbers another thread's, even one
 * that ran on the same vCPU while this one waited in the host. */
#include "internal.h"

static int errnos[VMRPC_MAX_CHANNELS];

int *__errno_location(void)
{
	unsigned t = rt_thread_id();

	return &errnos[t < VMRPC_MAX_CHANNELS ? t : 0];
}
