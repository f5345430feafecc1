/*
 * Guest-local pipes: one direction of a stream whose peer is in this guest: in this
 * program's memory, or in the loopback arena for a peer in another program (arena.c).
 * An arena pipe's state can be written by the other program: its buffer is found from
 * its slot, never from a pointer, and its positions are clamped before use.
 */
#include "internal.h"

static uint8_t *pipe_buf(const struct lpipe *p)
{
	uint8_t *b = arena_pipe_buf(p);

	return b ? b : p->buf;
}

size_t pipe_cap(const struct lpipe *p)
{
	return arena_pipe_buf(p) ? ARENA_PIPE_CAP : PIPE_CAP;
}

/* Bytes in the ring, at most its capacity whatever the positions say. */
static size_t used_bytes(const struct lpipe *p)
{
	uint64_t n = p->wpos - p->rpos;

	return n > pipe_cap(p) ? pipe_cap(p) : (size_t)n;
}

/* Waits for the peer: on the pipe's own word through the futex device when the VM
 * has an arena (arena.c), else a spin.  `waiters`: the pipe's rwait or wwait. */
static void pipe_wait(struct lpipe *p, uint32_t seen, volatile uint32_t *waiters)
{
	word_wait(&p->seq, seen, waiters);
}

enum change { WROTE, TOOK, ANY };

/* Bumps the pipe's word, then (the order a waiter's count-then-compare pairs with)
 * wakes who can go on: a reader after data came, a writer once half the ring is
 * free (not at every read: fewer wake-ups, each an exit), anyone after a close. */
static void pipe_changed(struct lpipe *p, enum change what)
{
	int wake;

	if (!arena_present())
		return;
	__atomic_add_fetch(&p->seq, 1, __ATOMIC_SEQ_CST);
	if (what == WROTE)
		wake = __atomic_load_n(&p->rwait, __ATOMIC_SEQ_CST) != 0;
	else if (what == TOOK)
		wake = __atomic_load_n(&p->wwait, __ATOMIC_SEQ_CST) &&
		       pipe_cap(p) - used_bytes(p) >= pipe_cap(p) / 2;
	else
		wake = __atomic_load_n(&p->rwait, __ATOMIC_SEQ_CST) ||
		       __atomic_load_n(&p->wwait, __ATOMIC_SEQ_CST);
	if (wake)
		word_changed(&p->seq, NULL);
	arena_changed(); /* a poll waits on the arena's word */
}

void pipe_kick(struct lpipe *p)
{
	pipe_changed(p, ANY);
}

struct lpipe *pipe_new(void)
{
	struct lpipe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->buf = malloc(PIPE_CAP);
	if (!p->buf) {
		free(p);
		return NULL;
	}
	p->refs = 2;
	return p;
}

void pipe_put(struct lpipe *p)
{
	if (p && arena_pipe_buf(p))
		return; /* an arena slot: arena_close frees it */
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(p->buf);
		free(p);
	}
}

uint64_t pipe_avail(struct lpipe *p)
{
	uint64_t n = __atomic_load_n(&p->wpos, __ATOMIC_ACQUIRE) -
		     __atomic_load_n(&p->rpos, __ATOMIC_ACQUIRE);

	return n > pipe_cap(p) ? pipe_cap(p) : n;
}

/* Copies len bytes in or out of the ring at position pos (wrapping). */
static void ring_copy(struct lpipe *p, uint64_t pos, uint8_t *data, size_t len, int to_ring)
{
	size_t cap = pipe_cap(p);
	size_t off = (size_t)(pos % cap);
	size_t first = len < cap - off ? len : cap - off;
	uint8_t *buf = pipe_buf(p);

	if (to_ring) {
		memcpy(buf + off, data, first);
		memcpy(buf, data + first, len - first);
	} else {
		memcpy(data, buf + off, first);
		memcpy(data + first, buf, len - first);
	}
}

ssize_t pipe_write(struct lpipe *p, const uint8_t *data, size_t len, int nonblock,
		   uint64_t deadline)
{
	size_t done = 0;

	while (done < len || len == 0) {
		uint32_t seen = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		size_t space, k;

		rt_spin_lock(&p->lock);
		if (p->rclosed) {
			int reset = p->reset;

			rt_spin_unlock(&p->lock);
			if (done)
				break;
			return fail(reset ? ECONNRESET : EPIPE);
		}
		if (p->wclosed) {
			rt_spin_unlock(&p->lock);
			return done ? (ssize_t)done : fail(EPIPE);
		}
		space = pipe_cap(p) - used_bytes(p);
		k = len - done < space ? len - done : space;
		if (k) {
			ring_copy(p, p->wpos, (uint8_t *)data + done, k, 1);
			__atomic_store_n(&p->wpos, p->wpos + k, __ATOMIC_RELEASE);
			done += k;
		}
		rt_spin_unlock(&p->lock);
		if (k)
			pipe_changed(p, WROTE);
		if (done == len)
			break;
		if (!k) {
			if (nonblock)
				return done ? (ssize_t)done : fail(EAGAIN);
			if (expired(deadline))
				return done ? (ssize_t)done : fail(EAGAIN);
			pipe_wait(p, seen, &p->wwait);
		}
	}
	stat_add(&stats.local_bytes, done);
	return (ssize_t)done;
}

ssize_t pipe_read(struct lpipe *p, uint8_t *data, size_t len, int flags, int nonblock,
		  uint64_t deadline)
{
	size_t done = 0;

	for (;;) {
		uint32_t seen = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		size_t avail, k;

		rt_spin_lock(&p->lock);
		if (p->reset) {
			rt_spin_unlock(&p->lock);
			return done ? (ssize_t)done : fail(ECONNRESET);
		}
		avail = used_bytes(p);
		k = len - done < avail ? len - done : avail;
		if (k) {
			ring_copy(p, p->rpos, data + done, k, 0);
			if (!(flags & MSG_PEEK))
				__atomic_store_n(&p->rpos, p->rpos + k, __ATOMIC_RELEASE);
			done += k;
		}
		if (!k && p->wclosed) {
			rt_spin_unlock(&p->lock);
			return (ssize_t)done; /* EOF */
		}
		rt_spin_unlock(&p->lock);
		if (k && !(flags & MSG_PEEK))
			pipe_changed(p, TOOK);
		if (done == len || (done && !(flags & MSG_WAITALL)) || (done && (flags & MSG_PEEK)))
			return (ssize_t)done;
		if (nonblock)
			return done ? (ssize_t)done : fail(EAGAIN);
		if (expired(deadline))
			return done ? (ssize_t)done : fail(EAGAIN);
		pipe_wait(p, seen, &p->rwait);
	}
}
