/*
 * Loopback connections between the programs of one multi-program Linux VM
 * (docs/sockets.md, "Specialisation across programs").
 *
 * Each program runs in a VM of its own; the host maps one loopback arena at the same
 * address into all of them (boot info arena_base, crates/vmm/src/arena.rs).  Here it
 * holds the listeners every program can connect to and the two byte pipes of each
 * connection between programs; a program's own sockets and the sockets table stay in
 * its private memory.  A program that finds no listener of its own for a loopback
 * address looks in the arena: a match gives a connection slot whose pipes both
 * programs use as guest-local pipes (pipe.c), so no byte of it reaches the host.
 *
 * Waiting: a blocked reader, writer or accepter waits through the futex device on the
 * arena's `change` word (its waits are keyed by the arena's address, shared by every
 * VM mapping it), so its vCPU runs other threads; every change bumps the word and
 * wakes the waiters.  Waits are also bounded (ARENA_WAIT_NS): a peer that never wakes
 * costs latency, not a hang.
 *
 * Trust: every program can write the arena, so nothing read from it is trusted beyond
 * the connections it names: no pointer is kept in it (pipe buffers are found from the
 * slot's index, see arena_pipe_buf), indices are checked, positions are clamped in
 * pipe.c.  A program that corrupts it breaks the connections it shares with the others,
 * never another program's private memory, nor the host (which never reads it).
 */
#include "internal.h"

#define ARENA_LISTENERS 32
#define ARENA_QUEUE 16
#define ARENA_CONNS 56
#define ARENA_BUF_OFFSET (1u << 20) /* pipe buffers, two per slot, after the tables */
/* 1 MiB + 56 * 2 * 512 KiB: 57 of the arena's 64 MiB (crates/vmm/src/layout.rs). */
#define ARENA_WAIT_NS (20 * 1000 * 1000)

struct arena_listener {
	uint32_t used, gen;
	uint32_t family, port;
	uint32_t head, count;
	uint32_t queue[ARENA_QUEUE]; /* connection slots not accepted yet */
};

struct arena_conn {
	uint32_t used, gen;
	struct vmrpc_sock_addr client;
	struct lpipe c2s, s2c; /* buf unused: see arena_pipe_buf */
};

struct arena {
	rt_spinlock_t lock;
	volatile uint32_t change;
	volatile uint32_t waiters;
	uint32_t next_conn;
	struct arena_listener listeners[ARENA_LISTENERS];
	struct arena_conn conns[ARENA_CONNS];
};
_Static_assert(sizeof(struct arena) <= ARENA_BUF_OFFSET, "tables fit before the buffers");

/* The Linux personality's futex calls (guest/linux/futex.c); bare guests have no arena. */
long lx_futex_wait(volatile uint32_t *uaddr, uint32_t val, int64_t timeout_ns, uint32_t bitset)
	__attribute__((weak));
long lx_futex_wake_shared(volatile uint32_t *uaddr, uint32_t n) __attribute__((weak));

static struct arena *arena(void)
{
	const struct vmrpc_boot_info *bi = rt_boot_info();
	uint64_t need = ARENA_BUF_OFFSET + 2ull * ARENA_CONNS * ARENA_PIPE_CAP;

	if (!bi || !bi->arena_base || bi->arena_size < need || !lx_futex_wait || !lx_futex_wake_shared)
		return NULL;
	return (struct arena *)(uintptr_t)bi->arena_base;
}

int arena_present(void)
{
	return arena() != NULL;
}

uint8_t *arena_pipe_buf(const struct lpipe *p)
{
	struct arena *a = arena();
	uintptr_t at = (uintptr_t)p, first = (uintptr_t)(a ? a->conns : 0);
	size_t i;

	if (!a || at < first || at >= (uintptr_t)(a->conns + ARENA_CONNS))
		return NULL;
	i = (at - first) / sizeof(struct arena_conn);
	return (uint8_t *)a + ARENA_BUF_OFFSET +
	       (2 * i + (p == &a->conns[i].s2c)) * (size_t)ARENA_PIPE_CAP;
}

uint32_t arena_seen(void)
{
	struct arena *a = arena();

	return a ? __atomic_load_n(&a->change, __ATOMIC_ACQUIRE) : 0;
}

/* Bumps *word and wakes its waiters if *waiters says there are any; with waiters
 * NULL, only wakes (the caller bumped and decided).  The word may be in the arena
 * (other programs' waiters) or private (this program's). */
void word_changed(volatile uint32_t *word, volatile uint32_t *waiters)
{
	if (!arena())
		return;
	if (waiters) {
		__atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(waiters, __ATOMIC_SEQ_CST))
			return;
	}
	lx_futex_wake_shared(word, 0x7fffffff);
}

/* Waits for *word to move on from `seen` (or a bounded while); without an arena,
 * a spin.  Counted in *waiters before the host compares the word: a waker that
 * bumps it after sees the count (its fence pairs with this locked add). */
void word_wait(volatile uint32_t *word, uint32_t seen, volatile uint32_t *waiters)
{
	if (!arena()) {
		cpu_relax();
		return;
	}
	__atomic_add_fetch(waiters, 1, __ATOMIC_SEQ_CST);
	lx_futex_wait(word, seen, ARENA_WAIT_NS, 0xffffffffu);
	__atomic_sub_fetch(waiters, 1, __ATOMIC_SEQ_CST);
}

void arena_changed(void)
{
	struct arena *a = arena();

	if (a)
		word_changed(&a->change, &a->waiters);
}

/* Waits for a change of the arena after `seen` (accept, poll); else a spin. */
void local_wait(uint32_t seen)
{
	struct arena *a = arena();

	if (a)
		word_wait(&a->change, seen, &a->waiters);
	else
		cpu_relax();
}

/* Publishes listener s (bound, loopback or wildcard) to the other programs. */
int arena_listen(struct gsock *s)
{
	struct arena *a = arena();
	int slot = -1;

	if (!a || !(addr_is_loopback(&s->self) || addr_is_any(&s->self)))
		return 0;
	rt_spin_lock(&a->lock);
	for (int i = 0; i < ARENA_LISTENERS; i++) {
		struct arena_listener *l = &a->listeners[i];

		if (l->used && l->family == s->self.family && l->port == s->self.port) {
			rt_spin_unlock(&a->lock);
			return fail(EADDRINUSE); /* another program listens there */
		}
		if (!l->used && slot < 0)
			slot = i;
	}
	if (slot >= 0) {
		struct arena_listener *l = &a->listeners[slot];

		l->used = 1;
		l->gen++;
		l->family = s->self.family;
		l->port = s->self.port;
		l->head = l->count = 0;
		s->arena_lid = slot + 1;
		s->arena_lgen = l->gen;
	}
	rt_spin_unlock(&a->lock);
	return 0; /* a full table: the listener serves its own program only */
}

/* The listener's arena entry if it is still s's; arena lock held. */
static struct arena_listener *own_listener(struct arena *a, struct gsock *s)
{
	struct arena_listener *l;

	if (s->arena_lid < 1 || s->arena_lid > ARENA_LISTENERS)
		return NULL;
	l = &a->listeners[s->arena_lid - 1];
	return l->used && l->gen == s->arena_lgen ? l : NULL;
}

static void conn_release(struct arena *a, uint32_t i, uint32_t gen)
{
	struct arena_conn *c = &a->conns[i];

	if (c->used && c->gen == gen && c->c2s.rclosed && c->c2s.wclosed && c->s2c.rclosed &&
	    c->s2c.wclosed)
		c->used = 0;
}

/* Connects s to another program's listener on dst; 1 done, 0 none there, -1 error. */
int arena_connect(struct gsock *s, const struct vmrpc_sock_addr *dst)
{
	struct arena *a = arena();
	struct arena_listener *l = NULL;
	uint32_t i = 0;
	int found = 0;

	if (!a || !addr_is_loopback(dst))
		return 0;
	if (ensure_bound(s) < 0)
		return -1;
	rt_spin_lock(&a->lock);
	for (int k = 0; k < ARENA_LISTENERS && !l; k++)
		if (a->listeners[k].used && a->listeners[k].family == dst->family &&
		    a->listeners[k].port == dst->port)
			l = &a->listeners[k];
	if (!l) {
		rt_spin_unlock(&a->lock);
		return 0;
	}
	if (l->count >= ARENA_QUEUE) {
		rt_spin_unlock(&a->lock);
		return fail(ECONNREFUSED); /* backlog full, as Linux answers a SYN flood */
	}
	for (uint32_t k = 0; k < ARENA_CONNS && !found; k++) {
		i = (a->next_conn + k) % ARENA_CONNS;
		found = !a->conns[i].used;
	}
	if (!found) {
		rt_spin_unlock(&a->lock);
		return fail(ENOBUFS);
	}
	a->next_conn = i + 1; /* round robin: a slot is reused as late as possible */
	struct arena_conn *c = &a->conns[i];
	uint32_t gen = c->gen + 1;

	memset(c, 0, sizeof(*c));
	c->used = 1;
	c->gen = gen;
	c->client = s->self;
	l->queue[(l->head + l->count) % ARENA_QUEUE] = i;
	l->count++;
	rt_spin_unlock(&a->lock);
	s->rx = &c->s2c;
	s->tx = &c->c2s;
	s->local = 1;
	s->arena_conn = (int)i + 1;
	s->arena_gen = gen;
	s->peer = *dst;
	s->has_peer = 1;
	stat_add(&stats.local_connects, 1);
	arena_changed();
	return 1;
}

/* A connection another program queued on listener l, as a new socket; NULL: none. */
struct gsock *arena_accept(struct gsock *l)
{
	struct arena *a = arena();
	struct arena_listener *al;
	struct gsock *c;
	uint32_t i;

	if (!a || !l->arena_lid)
		return NULL;
	c = sock_alloc(l->family, SOCK_STREAM);
	if (!c)
		return NULL;
	rt_spin_lock(&a->lock);
	al = own_listener(a, l);
	if (!al || !al->count || (i = al->queue[al->head % ARENA_QUEUE]) >= ARENA_CONNS) {
		if (al && al->count) { /* a bad entry: drop it */
			al->head = (al->head + 1) % ARENA_QUEUE;
			al->count--;
		}
		rt_spin_unlock(&a->lock);
		free(c);
		return NULL;
	}
	al->head = (al->head + 1) % ARENA_QUEUE;
	al->count--;
	c->arena_conn = (int)i + 1;
	c->arena_gen = a->conns[i].gen;
	c->peer = a->conns[i].client;
	rt_spin_unlock(&a->lock);
	c->state = ST_CONNECTED;
	c->local = 1;
	c->bound = c->has_peer = 1;
	c->self = l->self;
	c->rx = &a->conns[i].c2s;
	c->tx = &a->conns[i].s2c;
	if (!addr_is_loopback(&c->peer))
		addr_loopback(l->family, &c->peer); /* never trust a name from the arena */
	return c;
}

int arena_pending(struct gsock *l)
{
	struct arena *a = arena();
	int n = 0;

	if (!a || !l->arena_lid)
		return 0;
	rt_spin_lock(&a->lock);
	struct arena_listener *al = own_listener(a, l);

	n = al && al->count;
	rt_spin_unlock(&a->lock);
	return n;
}

/* Whether s's pipes are still the arena connection it had (a slot is reused). */
int arena_conn_current(const struct gsock *s)
{
	struct arena *a = arena();
	uint32_t i = (uint32_t)s->arena_conn - 1;

	if (!s->arena_conn)
		return 1;
	return a && i < ARENA_CONNS && a->conns[i].used && a->conns[i].gen == s->arena_gen;
}

/* At teardown, after the pipes were shut: frees a connection slot both ends left,
 * withdraws a listener (refusing what it had not accepted). */
void arena_close(struct gsock *s)
{
	struct arena *a = arena();

	if (!a)
		return;
	if (s->arena_conn) {
		rt_spin_lock(&a->lock);
		conn_release(a, (uint32_t)s->arena_conn - 1, s->arena_gen);
		rt_spin_unlock(&a->lock);
	}
	if (s->arena_lid) {
		rt_spin_lock(&a->lock);
		struct arena_listener *l = own_listener(a, s);

		while (l && l->count) {
			uint32_t i = l->queue[l->head % ARENA_QUEUE];

			l->head = (l->head + 1) % ARENA_QUEUE;
			l->count--;
			if (i < ARENA_CONNS) {
				a->conns[i].s2c.wclosed = 1;
				a->conns[i].c2s.rclosed = 1;
				a->conns[i].c2s.reset = 1;
				conn_release(a, i, a->conns[i].gen);
				pipe_kick(&a->conns[i].s2c);
				pipe_kick(&a->conns[i].c2s);
			}
		}
		if (l)
			l->used = 0;
		rt_spin_unlock(&a->lock);
	}
	arena_changed();
}
