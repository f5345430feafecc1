/* errno: one per vCPU, so a call on one vCPU never clobbers another's. */
#include "internal.h"

static int errnos[VMRPC_MAX_VCPUS];

int *__errno_location(void)
{
	unsigned cpu = rt_cpu_id();

	return &errnos[cpu < VMRPC_MAX_VCPUS ? cpu : 0];
}
