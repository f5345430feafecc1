/*
 * futex: FUTEX_WAIT/WAKE, WAIT_BITSET/WAKE_BITSET, REQUEUE/CMP_REQUEUE, WAKE_OP,
 * with relative and absolute timeouts.  A wait blocks this thread in the host futex
 * table (its vCPU runs another thread meanwhile) (crates/vmm/src/linux/futex.rs: one MMIO write, the word compared
 * under the host's lock, so no wake is lost).  `waiters` counts threads in
 * such a wait: a wake (every unlock of a contended lock) exits to the host only
 * when it is non-zero.  A wait with no timeout that nothing could end (no other
 * thread lives) answers EDEADLK instead of hanging the VM, as before threads.
 */
#include "linux.h"
#include "futex_abi.h"

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_REQUEUE 3
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_BITSET_ALL 0xffffffffu
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1

static volatile uint32_t waiters;

static long host(struct lx_futex_req *r)
{
	r->result = -ENOSYS; /* what stays if the host has no futex table */
	mmio_write64(r->op == LX_FUTEX_OP_WAIT ? LX_MMIO_FUTEX_WAIT : LX_MMIO_FUTEX,
		     (uint64_t)(uintptr_t)r);
	__asm__ volatile("" : : : "memory");
	return (long)r->result;
}

long lx_futex_wait(volatile uint32_t *uaddr, uint32_t val, int64_t timeout_ns, uint32_t bitset)
{
	struct lx_futex_req r = {LX_FUTEX_OP_WAIT, val, (uint64_t)(uintptr_t)uaddr, timeout_ns, bitset, 0, 0, 0, 0, 0};
	long res;

	/* Counted before the host compares the word: a waker that stores after
	 * this sees us (its fence pairs with this locked add). */
	__atomic_add_fetch(&waiters, 1, __ATOMIC_SEQ_CST);
	res = host(&r);
	__atomic_sub_fetch(&waiters, 1, __ATOMIC_SEQ_CST);
	return res;
}

long lx_futex_sleep(int64_t ns)
{
	volatile uint32_t word = 0; /* nobody wakes it: only the timeout ends the wait */
	struct lx_futex_req r = {LX_FUTEX_OP_WAIT, 0, (uint64_t)(uintptr_t)&word, ns,
				 FUTEX_BITSET_ALL, 0, 0, 0, 0, 0};

	return host(&r);
}

static long wake_or_requeue(uint64_t uaddr, uint32_t n, uint32_t bitset, uint64_t uaddr2,
			    uint32_t n2, int cmp, uint32_t val)
{
	struct lx_futex_req r = {LX_FUTEX_OP_WAKE, val, uaddr, -1, bitset, n, 0, uaddr2, n2,
				 (uint32_t)cmp};

	/* The program's store to the word must be visible before we read the count. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&waiters, __ATOMIC_SEQ_CST)) {
		if (cmp && *(volatile uint32_t *)(uintptr_t)uaddr != val)
			return -EAGAIN;
		return 0;
	}
	if (uaddr2)
		r.op = LX_FUTEX_OP_REQUEUE;
	return host(&r);
}

/* A wake that always asks the host: for a word other programs wait on too (the
 * loopback arena, lib/sockets/arena.c), whose waiters `waiters` does not count. */
long lx_futex_wake_shared(volatile uint32_t *uaddr, uint32_t n)
{
	struct lx_futex_req r = {LX_FUTEX_OP_WAKE, 0, (uint64_t)(uintptr_t)uaddr, -1,
				 FUTEX_BITSET_ALL, n, 0, 0, 0, 0};

	return host(&r);
}

long lx_futex_wake(volatile uint32_t *uaddr, uint32_t n)
{
	return wake_or_requeue((uint64_t)(uintptr_t)uaddr, n, FUTEX_BITSET_ALL, 0, 0, 0, 0);
}

/* The relative timeout of a wait (-1: none), from the program's timespec. */
static long timeout_of(uint64_t ts, int absolute, int clk, int64_t *out)
{
	int64_t ns, now;
	long r;

	*out = -1;
	if (!ts)
		return 0;
	r = lx_user_timespec(ts, &ns);
	if (r < 0)
		return r;
	if (absolute) {
		lx_clock_ns(clk, &now);
		ns = ns > now ? ns - now : 0;
	}
	*out = ns;
	return 0;
}

static long wait(uint64_t uaddr, uint32_t val, uint64_t ts, int absolute, int clk,
		 uint32_t bitset)
{
	int64_t timeout;
	long r;

	if (uaddr & 3)
		return -EINVAL;
	if (!lx_user_ok(uaddr, 4))
		return -EFAULT;
	r = timeout_of(ts, absolute, clk, &timeout);
	if (r < 0)
		return r;
	if (*(volatile uint32_t *)(uintptr_t)uaddr != val)
		return -EAGAIN;
	if (timeout < 0 && lx_threads_alone())
		return -EDEADLK; /* only another thread could end it, and none lives */
	r = lx_futex_wait((volatile uint32_t *)(uintptr_t)uaddr, val, timeout, bitset);
	return r == -EINTR ? -EAGAIN : r; /* -EINTR: the VM is stopping anyway */
}

/*
 * FUTEX_WAKE_OP's operation on *w, as Linux's futex_atomic_op_inuser: the op
 * (bits 28-30; bit 31: the argument is a shift) applied atomically, then the
 * old value compared (bits 24-27) with the sign-extended 12-bit argument.
 * 1 if the comparison holds, 0 if not, -ENOSYS for an unknown op (nothing
 * written) or comparison (written, as Linux does).
 */
static long wake_op_apply(volatile uint32_t *w, uint32_t enc)
{
	unsigned op = (enc >> 28) & 7, cmp = (enc >> 24) & 15;
	int32_t oparg = (int32_t)(enc << 8) >> 20, cmparg = (int32_t)(enc << 20) >> 20;
	uint32_t old = *w, new;

	if (enc & 0x80000000u)
		oparg = (int32_t)(1u << (oparg & 31)); /* Linux masks a shift past 31 */
	if (op > 4)
		return -ENOSYS;
	do {
		switch (op) {
		case 0: new = (uint32_t)oparg; break;		/* SET */
		case 1: new = old + (uint32_t)oparg; break;	/* ADD */
		case 2: new = old | (uint32_t)oparg; break;	/* OR */
		case 3: new = old & ~(uint32_t)oparg; break;	/* ANDN */
		default: new = old ^ (uint32_t)oparg; break;	/* XOR */
		}
	} while (!__atomic_compare_exchange_n(w, &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	switch (cmp) {
	case 0: return (int32_t)old == cmparg;
	case 1: return (int32_t)old != cmparg;
	case 2: return (int32_t)old < cmparg;
	case 3: return (int32_t)old <= cmparg;
	case 4: return (int32_t)old > cmparg;
	case 5: return (int32_t)old >= cmparg;
	default: return -ENOSYS;
	}
}

/* FUTEX_WAKE_OP: *uaddr2 changed, up to n waiters of uaddr woken, and up to n2
 * of uaddr2 if the old value passed the comparison; the number woken. */
static long wake_op(uint64_t uaddr, uint32_t n, uint64_t uaddr2, uint32_t n2, uint32_t enc)
{
	long cond, woke, more = 0;

	if ((uaddr & 3) || (uaddr2 & 3))
		return -EINVAL;
	if (!lx_user_ok(uaddr2, 4) || !lx_prot_writable(uaddr2))
		return -EFAULT;
	cond = wake_op_apply((volatile uint32_t *)(uintptr_t)uaddr2, enc);
	if (cond < 0)
		return cond;
	woke = wake_or_requeue(uaddr, n, FUTEX_BITSET_ALL, 0, 0, 0, 0);
	if (woke >= 0 && cond)
		more = wake_or_requeue(uaddr2, n2, FUTEX_BITSET_ALL, 0, 0, 0, 0);
	if (woke < 0 || more < 0)
		return woke < 0 ? woke : more;
	return woke + more;
}

long lx_futex_syscall(struct lx_frame *f)
{
	int op = (int)f->rsi & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
	int clk = (f->rsi & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC;
	uint32_t n = (uint32_t)f->rdx > 0x7fffffffu ? 0x7fffffffu : (uint32_t)f->rdx;
	uint32_t n2 = (uint32_t)f->r10 > 0x7fffffffu ? 0x7fffffffu : (uint32_t)f->r10;

	if (f->nr != __NR_futex)
		return LX_ENOSYS_MARK;
	switch (op) {
	case FUTEX_WAKE:
		return wake_or_requeue(f->rdi, n, FUTEX_BITSET_ALL, 0, 0, 0, 0);
	case FUTEX_WAKE_BITSET:
		if (!(uint32_t)f->r9)
			return -EINVAL;
		return wake_or_requeue(f->rdi, n, (uint32_t)f->r9, 0, 0, 0, 0);
	case FUTEX_REQUEUE:
	case FUTEX_CMP_REQUEUE:
		if ((f->rdi & 3) || (f->r8 & 3))
			return -EINVAL;
		if (!lx_user_ok(f->rdi, 4) || !lx_user_ok(f->r8, 4))
			return -EFAULT;
		return wake_or_requeue(f->rdi, n, FUTEX_BITSET_ALL, f->r8, n2,
				       op == FUTEX_CMP_REQUEUE, (uint32_t)f->r9);
	case FUTEX_WAKE_OP:
		return wake_op(f->rdi, n, f->r8, n2, (uint32_t)f->r9);
	case FUTEX_WAIT:
		return wait(f->rdi, (uint32_t)f->rdx, f->r10, 0, CLOCK_MONOTONIC, FUTEX_BITSET_ALL);
	case FUTEX_WAIT_BITSET:
		if (!(uint32_t)f->r9)
			return -EINVAL;
		return wait(f->rdi, (uint32_t)f->rdx, f->r10, 1, clk, (uint32_t)f->r9);
	default:
		return -ENOSYS;
	}
}
