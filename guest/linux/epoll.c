/*
 * epoll_create1, epoll_ctl, epoll_wait and epoll_pwait over lx_wait (wait.c).
 *
 * An instance is an interest list of (fd, events, data).  Readiness is level-
 * triggered; EPOLLET is accepted and served level-triggered (a program written
 * for edge triggering reads until EAGAIN, so extra reports only cost a loop),
 * EPOLLONESHOT disables an entry once reported.  Entries are keyed by fd
 * number; one whose fd was closed is dropped when a wait finds it gone.
 */
#include "linux.h"

#define MAX_EPOLL 16
#define MAX_INTEREST 256
#define MAX_EVENTS MAX_INTEREST /* events one wait can report */
#define EPOLL_CTL_ADD 1
#define EPOLL_CTL_DEL 2
#define EPOLL_CTL_MOD 3
#define EPOLL_CLOEXEC 02000000
#define EPOLLRDHUP 0x2000u
#define EPOLLEXCLUSIVE (1u << 28)
#define EPOLLWAKEUP (1u << 29)
#define EPOLLONESHOT (1u << 30)
#define EPOLLET (1u << 31)
#define POLL_BITS (POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDNORM | POLLWRNORM)
#define FLAG_BITS (EPOLLRDHUP | EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET)

struct epoll_event {
	uint32_t events;
	uint64_t data;
} __attribute__((packed)); /* x86-64 Linux packs it: 12 bytes */

struct interest {
	int fd;
	uint32_t events;
	uint64_t data;
	int disabled; /* EPOLLONESHOT, reported */
};

struct instance {
	int used;
	int count;
	struct interest list[MAX_INTEREST];
};

static struct instance instances[MAX_EPOLL];
static struct pollfd wait_set[MAX_INTEREST];
static uint32_t wait_index[MAX_INTEREST];

void lx_epoll_release(int64_t ep)
{
	if (ep >= 0 && ep < MAX_EPOLL)
		instances[ep].used = 0;
}

static long do_create(int flags)
{
	if (flags & ~EPOLL_CLOEXEC)
		return -EINVAL;
	for (int i = 0; i < MAX_EPOLL; i++) {
		if (!instances[i].used) {
			instances[i].used = 1;
			instances[i].count = 0;
			return lx_fd_install_epoll(i, flags);
		}
	}
	return -ENFILE;
}

static struct instance *instance_of(int64_t epfd)
{
	int64_t ep = lx_fd_epoll((int)epfd);

	return ep < 0 || ep >= MAX_EPOLL ? NULL : &instances[ep];
}

static struct interest *find(struct instance *in, int fd)
{
	for (int i = 0; i < in->count; i++)
		if (in->list[i].fd == fd)
			return &in->list[i];
	return NULL;
}

static long do_ctl(int64_t epfd, int op, int64_t fd, uint64_t uev)
{
	struct instance *in = instance_of(epfd);
	struct epoll_event ev = { 0, 0 };
	struct interest *it;

	if (epfd < 0 || epfd > 0x7fffffff || fd < 0 || fd > 0x7fffffff)
		return -EBADF;
	if (!in)
		return lx_fd_epoll((int)epfd) == -EBADF ? -EBADF : -EINVAL;
	if (lx_fd_ready((int)fd, 0) & POLLNVAL)
		return -EBADF;
	if (fd == epfd || lx_fd_epoll((int)fd) >= 0)
		return -EINVAL; /* nesting epoll instances is not served */
	if (op != EPOLL_CTL_DEL) {
		if (!uev || !lx_user_ok(uev, sizeof(ev)))
			return -EFAULT;
		memcpy(&ev, (const void *)(uintptr_t)uev, sizeof(ev));
		if (ev.events & ~(uint32_t)(POLL_BITS | FLAG_BITS))
			return -EINVAL;
	}
	it = find(in, (int)fd);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (it)
			return -EEXIST;
		if (in->count == MAX_INTEREST)
			return -ENOSPC;
		it = &in->list[in->count++];
		it->fd = (int)fd;
		break;
	case EPOLL_CTL_MOD:
		if (!it)
			return -ENOENT;
		break;
	case EPOLL_CTL_DEL:
		if (!it)
			return -ENOENT;
		*it = in->list[--in->count];
		return 0;
	default:
		return -EINVAL;
	}
	it->events = ev.events;
	it->data = ev.data;
	it->disabled = 0;
	return 0;
}

static long do_wait(int64_t epfd, uint64_t uevents, int64_t max, int64_t timeout_ms)
{
	struct instance *in = instance_of(epfd);
	struct epoll_event *out = (struct epoll_event *)(uintptr_t)uevents;
	uint32_t n = 0;
	long r, got = 0;

	if (!in)
		return lx_fd_epoll((int)epfd) == -EBADF ? -EBADF : -EINVAL;
	if (max <= 0 || max > 0x7fffffff / (int64_t)sizeof(*out))
		return -EINVAL; /* Linux's limits */
	if (max > MAX_EVENTS)
		max = MAX_EVENTS; /* more than a wait can report: room for what it can */
	if (!lx_user_ok(uevents, (uint64_t)max * sizeof(*out)))
		return -EFAULT;
	for (int i = 0; i < in->count; i++) {
		if (in->list[i].disabled)
			continue;
		wait_set[n].fd = in->list[i].fd;
		/* Errors and hang-ups are always reported, as by Linux. */
		wait_set[n].events = (short)(in->list[i].events & POLL_BITS);
		wait_index[n++] = (uint32_t)i;
	}
	r = lx_wait(wait_set, n, timeout_ms);
	if (r < 0)
		return r;
	/* Report (and drop closed fds) from the end, so removals keep earlier indexes valid. */
	for (uint32_t j = n; j-- > 0;) {
		struct interest *it = &in->list[wait_index[j]];
		short rev = wait_set[j].revents;
		struct epoll_event ev;

		if (rev & POLLNVAL) {
			*it = in->list[--in->count];
			continue;
		}
		if (!rev || got == max)
			continue;
		ev.events = (uint32_t)(uint16_t)rev;
		ev.data = it->data;
		memcpy(&out[got++], &ev, sizeof(ev));
		if (it->events & EPOLLONESHOT)
			it->disabled = 1;
	}
	return got;
}

long lx_epoll_syscall(struct lx_frame *f)
{
	switch (f->nr) {
	case __NR_epoll_create:
		return (int)f->rdi <= 0 ? -EINVAL : do_create(0);
	case __NR_epoll_create1:
		return do_create((int)f->rdi);
	case __NR_epoll_ctl:
		return do_ctl((int32_t)f->rdi, (int)f->rsi, (int32_t)f->rdx, f->r10);
	case __NR_epoll_wait:
	case __NR_epoll_pwait:
		return do_wait((int32_t)f->rdi, f->rsi, (int32_t)f->rdx,
			       (int32_t)f->r10 < 0 ? -1 : (int32_t)f->r10);
	default:
		return LX_ENOSYS_MARK;
	}
}
