/*
 * The host futex table of the personality's threads (crates/vmm/src/linux/
 * futex.rs): a 64-bit MMIO write of the guest address of a struct
 * lx_futex_req to LX_MMIO_FUTEX (wakes, requeues) or LX_MMIO_FUTEX_WAIT
 * (waits, which may block); the host answers in `result` before the write
 * completes.  A wait blocks the thread in the host, and its vCPU runs
 * another thread meanwhile (crates/vmm/src/vm/pool.rs).
 */
#ifndef LX_FUTEX_ABI_H
#define LX_FUTEX_ABI_H

#include <stdint.h>

#define LX_MMIO_FUTEX (0xd0000000ull + 0x100000u)
#define LX_MMIO_FUTEX_WAIT (LX_MMIO_FUTEX + 8u)
#define LX_FUTEX_OP_WAIT 0u
#define LX_FUTEX_OP_WAKE 1u
#define LX_FUTEX_OP_REQUEUE 2u /* wake `count`, move up to `count2` to uaddr2 */

struct lx_futex_req {
	uint32_t op;
	uint32_t val;        /* WAIT: the value the word must still hold */
	uint64_t uaddr;      /* the word (4-byte aligned, identity-mapped) */
	int64_t timeout_ns;  /* WAIT: relative; < 0: none */
	uint32_t bitset;     /* never 0 */
	uint32_t count;      /* WAKE: at most this many */
	int64_t result;      /* >= 0, or -errno (-EINTR: the VM is stopping) */
	uint64_t uaddr2;     /* REQUEUE: where the moved waiters wait from now on */
	uint32_t count2;     /* REQUEUE: at most this many moved */
	uint32_t cmp;        /* REQUEUE: 1 = only if the word still holds val (else -EAGAIN) */
};
_Static_assert(sizeof(struct lx_futex_req) == 56, "agrees with futex.rs");

#endif
