/*
 * Readiness over any mix of fds: poll, ppoll, select and pselect6 (epoll.c
 * builds on lx_wait too).
 *
 * Guest-local fds (pipes, files) are answered by fd.c; sockets by the guest
 * socket library's poll, which asks the sockets host module for host sockets
 * in one VMRPC_SOCK_FN_POLL.  A wait that must block blocks in that one host call,
 * which the host answers when a socket becomes ready (its asyncio loop), not
 * in slices: the program is the only thread of this VM, so nothing guest-local
 * (pipes, guest-local sockets) can change while it waits.
 */
#include "linux.h"

#define MAX_SET 1024

static struct pollfd sock_set[MAX_SET];
static uint32_t sock_index[MAX_SET];

/*
 * Fills the revents of set's guest-local fds (and connect outcomes: POLLOUT |
 * POLLERR for a socket whose non-blocking connect has one to collect) and lists
 * its sockets in socks/index; returns how many sockets.
 */
uint32_t lx_wait_scan(struct pollfd *set, uint64_t n, struct pollfd *socks, uint32_t *index)
{
	uint32_t k = 0;

	for (uint64_t i = 0; i < n; i++) {
		int64_t s;

		set[i].revents = 0;
		if (set[i].fd < 0)
			continue;
		s = lx_fd_sock(set[i].fd, NULL);
		if (s < 0) {
			set[i].revents = (short)lx_fd_ready(set[i].fd, set[i].events);
			continue;
		}
		if (lx_net_pending_error(s))
			set[i].revents = (short)(POLLERR | (set[i].events & POLLOUT));
		socks[k].fd = (int)s;
		socks[k].events = set[i].events;
		socks[k].revents = 0;
		index[k++] = (uint32_t)i;
	}
	return k;
}

long lx_wait_sockets(struct pollfd *set, struct pollfd *socks, const uint32_t *index, uint32_t k,
		     int64_t timeout_ms)
{
	int ms = timeout_ms < 0 ? -1 : timeout_ms > 0x7fffffff ? 0x7fffffff : (int)timeout_ms;
	int r = poll(socks, k, ms);

	if (r < 0)
		return -errno;
	for (uint32_t j = 0; j < k; j++)
		set[index[j]].revents |= socks[j].revents;
	return r;
}

/* Spins out a timeout nothing can end early; an endless one is a deadlock. */
static long no_event_wait(int64_t timeout_ms)
{
	uint64_t until;

	if (timeout_ms < 0)
		return -EDEADLK; /* nothing else runs that could make an fd ready */
	until = rdtsc() + rt_tsc_khz() * (uint64_t)timeout_ms;
	while (rdtsc() < until)
		cpu_relax();
	return 0;
}

long lx_wait_count(const struct pollfd *set, uint64_t n)
{
	long count = 0;

	for (uint64_t i = 0; i < n; i++)
		count += set[i].revents != 0;
	return count;
}

long lx_wait(struct pollfd *set, uint64_t n, int64_t timeout_ms)
{
	uint32_t k;
	long r;

	if (n > MAX_SET)
		return -EINVAL;
	if (!lx_threads_alone())
		return lx_wait_threaded(set, n, timeout_ms); /* another thread may make one ready */
	k = lx_wait_scan(set, n, sock_set, sock_index);
	if (k) {
		r = lx_wait_sockets(set, sock_set, sock_index, k, 0);
		if (r < 0)
			return r;
	}
	r = lx_wait_count(set, n);
	if (r || timeout_ms == 0)
		return r;
	if (!k)
		return no_event_wait(timeout_ms);
	r = lx_wait_sockets(set, sock_set, sock_index, k, timeout_ms);
	return r < 0 ? r : lx_wait_count(set, n);
}

static long do_poll(uint64_t addr, uint64_t n, int64_t timeout_ms)
{
	static struct pollfd copy[MAX_SET];
	struct pollfd *user = (struct pollfd *)(uintptr_t)addr;
	long r;

	if (n > MAX_SET)
		return -EINVAL;
	if (!lx_user_ok(addr, n * sizeof(*user)))
		return -EFAULT;
	memcpy(copy, user, n * sizeof(*user));
	r = lx_wait(copy, n, timeout_ms);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < n; i++)
		user[i].revents = copy[i].revents;
	return r;
}

/* A struct timespec/timeval in milliseconds (-1: none, -EFAULT/-EINVAL: bad). */
static int64_t ts_ms(uint64_t addr, int64_t unit_div, int64_t unit_max)
{
	int64_t t[2];

	if (!addr)
		return -1;
	if (!lx_user_ok(addr, sizeof(t)))
		return -EFAULT;
	memcpy(t, (const void *)(uintptr_t)addr, sizeof(t));
	if (t[0] < 0 || t[1] < 0 || t[1] >= unit_max)
		return -EINVAL;
	if (t[0] > 0x7fffffff / 1000)
		return 0x7fffffff;
	return t[0] * 1000 + (t[1] + unit_div - 1) / unit_div;
}

static long do_select(int64_t n, uint64_t rd, uint64_t wr, uint64_t ex, int64_t timeout_ms)
{
	static struct pollfd set[MAX_SET];
	uint64_t addrs[3] = { rd, wr, ex };
	uint64_t in[3][MAX_SET / 64], out[3][MAX_SET / 64];
	uint64_t words = (uint64_t)(n + 63) / 64, m = 0;
	long r;

	if (timeout_ms < -1)
		return timeout_ms;
	if (n < 0 || n > MAX_SET)
		return -EINVAL;
	memset(in, 0, sizeof(in));
	memset(out, 0, sizeof(out));
	for (int s = 0; s < 3; s++) {
		if (!addrs[s])
			continue;
		if (!lx_user_ok(addrs[s], words * 8))
			return -EFAULT;
		memcpy(in[s], (const void *)(uintptr_t)addrs[s], words * 8);
	}
	for (int64_t fd = 0; fd < n; fd++) {
		short ev = 0;

		ev |= ((in[0][fd / 64] >> (fd % 64)) & 1) ? POLLIN : 0;
		ev |= ((in[1][fd / 64] >> (fd % 64)) & 1) ? POLLOUT : 0;
		ev |= ((in[2][fd / 64] >> (fd % 64)) & 1) ? POLLPRI : 0;
		if (!ev)
			continue;
		set[m].fd = (int)fd;
		set[m++].events = ev;
	}
	r = lx_wait(set, m, timeout_ms);
	if (r < 0)
		return r;
	r = 0;
	for (uint64_t i = 0; i < m; i++) {
		int fd = set[i].fd;
		short rev = set[i].revents;

		if (rev & POLLNVAL)
			return -EBADF;
		/* As Linux: errors and hang-ups make an fd readable and writable. */
		if (rev & (POLLIN | POLLHUP | POLLERR) && set[i].events & POLLIN) {
			out[0][fd / 64] |= 1ull << (fd % 64);
			r++;
		}
		if (rev & (POLLOUT | POLLERR) && set[i].events & POLLOUT) {
			out[1][fd / 64] |= 1ull << (fd % 64);
			r++;
		}
		if (rev & POLLPRI && set[i].events & POLLPRI) {
			out[2][fd / 64] |= 1ull << (fd % 64);
			r++;
		}
	}
	for (int s = 0; s < 3; s++)
		if (addrs[s])
			memcpy((void *)(uintptr_t)addrs[s], out[s], words * 8);
	return r;
}

long lx_wait_syscall(struct lx_frame *f)
{
	int64_t ms;

	switch (f->nr) {
	case __NR_poll:
		return do_poll(f->rdi, f->rsi, (int32_t)f->rdx < 0 ? -1 : (int32_t)f->rdx);
	case __NR_ppoll:
		ms = ts_ms(f->rdx, 1000000, 1000000000);
		return ms < -1 ? ms : do_poll(f->rdi, f->rsi, ms);
	case __NR_select:
		return do_select((int32_t)f->rdi, f->rsi, f->rdx, f->r10, ts_ms(f->r8, 1000, 1000000));
	case __NR_pselect6:
		return do_select((int32_t)f->rdi, f->rsi, f->rdx, f->r10,
				 ts_ms(f->r8, 1000000, 1000000000));
	default:
		return lx_epoll_syscall(f);
	}
}
