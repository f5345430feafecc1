/*
 * The snapshot point (VMRPC_LINUX_NR_SNAPSHOT, vcpu_abi.h): the program asks
 * the host to snapshot the VM right here.  The VM that takes the snapshot
 * stops inside the MMIO write below; every VM started from the snapshot goes
 * on after it, with `result` = 1 and a fresh seed from the host, and reseeds
 * getrandom so that no two of them draw the same bytes
 * (crates/vmm/src/vm/snapshot.rs, docs/linux.md "Snapshots").
 */
#include "linux.h"
#include "vcpu_abi.h"

long lx_snapshot_point(void)
{
	struct lx_snapshot_point point = {
		-EBUSY, /* what stays when the host takes no snapshot (threads, no device) */
		{0},
	};

	if (lx_forked())
		return -EBUSY; /* a forked child: its parent's memory is on the host */
	/* The host files the program closed are closed on the host before the
	 * snapshot: a snapshot is only taken with none open. */
	lx_host_fast_flush();
	mmio_write64(LX_MMIO_THREAD + LX_THREAD_SNAPSHOT, (uint64_t)(uintptr_t)&point);
	__asm__ volatile("" : : : "memory");
	if (point.result != 1)
		return point.result;
	lx_rand_reseed(point.seed);
	return 0;
}
