/*
 * Statistics of the socket library (vmrpc_sock_get_stats).
 */
#include "internal.h"

struct vmrpc_sock_stats stats;

void vmrpc_sock_get_stats(struct vmrpc_sock_stats *out)
{
	out->host_rpcs = __atomic_load_n(&stats.host_rpcs, __ATOMIC_RELAXED);
	out->local_connects = __atomic_load_n(&stats.local_connects, __ATOMIC_RELAXED);
	out->host_connects = __atomic_load_n(&stats.host_connects, __ATOMIC_RELAXED);
	out->local_bytes = __atomic_load_n(&stats.local_bytes, __ATOMIC_RELAXED);
	out->host_exits = __atomic_load_n(&stats.host_exits, __ATOMIC_RELAXED);
}
