/*
 * poll/select/epoll when the program has several threads (wait.c keeps the
 * single-threaded path, which blocks in one host call).  Another thread may
 * make a guest-local fd ready (a pipe), so the wait must not hold the
 * personality lock: it works on copies on this vCPU's syscall stack (the
 * callers' sets are static), lets the lock go while it blocks, and puts the
 * whole set back before returning, under the lock again.
 *
 * Blocking: with no socket in the set, on the guest-local readiness counter
 * (lx_ready_wait: woken by any pipe change); with sockets, in the socket
 * library's poll (the host answers when one is ready) for at most SLICE_MS at
 * a time, after which guest-local fds are looked at again.
 */
#include "linux.h"

#define SLICE_MS 20
#define NS_PER_MS 1000000ll

static int64_t now_ms(void)
{
	int64_t ns = 0;

	lx_clock_ns(1 /* CLOCK_MONOTONIC */, &ns);
	return ns / NS_PER_MS;
}

/* The sockets' part of a wait; with `unlocked`, the personality lock goes meanwhile. */
static long sock_poll(struct pollfd *set, struct pollfd *socks, const uint32_t *index,
		      uint32_t k, int ms, int unlocked)
{
	int held = unlocked ? lx_block_begin() : 0;
	long r = lx_wait_sockets(set, socks, index, k, ms);

	lx_block_end(held);
	return r < 0 ? r : 0;
}

long lx_wait_threaded(struct pollfd *set, uint64_t n, int64_t timeout_ms)
{
	uint64_t m = n ? n : 1;
	struct pollfd local[m], socks[m];
	uint32_t index[m];
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	long r;

	memcpy(local, set, n * sizeof(*set));
	for (;;) {
		int64_t left = deadline < 0 ? -1 : deadline - now_ms();
		uint32_t k = lx_wait_scan(local, n, socks, index);

		r = k ? sock_poll(local, socks, index, k, 0, 0) : 0;
		if (r < 0)
			break;
		r = lx_wait_count(local, n);
		if (r || timeout_ms == 0 || (deadline >= 0 && left <= 0))
			break;
		if (k) {
			int ms = left < 0 || left > SLICE_MS ? SLICE_MS : (int)left;
			r = sock_poll(local, socks, index, k, ms, 1);
		} else {
			r = lx_ready_wait(left < 0 ? -1 : left * NS_PER_MS);
			r = r == -ETIMEDOUT || r == -EAGAIN ? 0 : r;
		}
		if (r < 0)
			break;
	}
	memcpy(set, local, n * sizeof(*set));
	return r;
}
