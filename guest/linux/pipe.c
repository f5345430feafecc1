/*
 * In-guest pipe buffers (the fd side, blocking and wake-ups, is fd.c): a pool
 * of pipes, each a ring of free-running byte counters over a 64 KiB buffer.
 * A forked child's full pipe grows instead (pipe_grow), since the reader that
 * would drain it is its suspended parent (fork.c).
 */
#include "linux.h"
#include "fd.h"

#define MAX_PIPES 8
#define PIPE_SIZE 65536u
#define PIPE_GROW_MAX (4u << 20)

struct pipe {
	int used;
	uint32_t head, tail; /* free-running byte counters */
	uint32_t size;       /* a power of two: the counters wrap consistently */
	int readers, writers;
	uint8_t *buf;        /* own_buf, or a larger one from the heap */
	uint8_t own_buf[PIPE_SIZE];
};

static struct pipe pipes[MAX_PIPES];

struct pipe *lx_pipe_new(void)
{
	for (int i = 0; i < MAX_PIPES; i++) {
		struct pipe *p = &pipes[i];

		if (!p->used) {
			p->used = 1;
			p->head = p->tail = 0;
			p->buf = p->own_buf;
			p->size = PIPE_SIZE;
			p->readers = p->writers = 1;
			return p;
		}
	}
	return NULL;
}

void lx_pipe_close_end(struct pipe *p, int writer)
{
	if (writer)
		p->writers--;
	else
		p->readers--;
	if (p->readers || p->writers)
		return;
	if (p->buf != p->own_buf)
		free(p->buf);
	p->buf = p->own_buf;
	p->used = 0;
}

int lx_pipe_readers(const struct pipe *p)
{
	return p->readers;
}

int lx_pipe_writers(const struct pipe *p)
{
	return p->writers;
}

uint64_t lx_pipe_take(struct pipe *p, uint8_t *dst, uint64_t len)
{
	uint64_t n = 0;

	while (n < len && p->tail != p->head)
		dst[n++] = p->buf[p->tail++ % p->size];
	return n;
}

/*
 * A forked child runs while its parent is suspended: a full pipe that the
 * parent would drain doubles instead (up to PIPE_GROW_MAX), so that `x=$(cmd)`
 * gets more than 64 KiB.  1 if there is room now.
 */
static int pipe_grow(struct pipe *p)
{
	uint32_t size = p->size * 2;
	uint8_t *buf;

	if (!lx_forked() || !lx_threads_alone() || p->size >= PIPE_GROW_MAX)
		return 0;
	buf = malloc(size);
	if (!buf)
		return 0;
	for (uint32_t i = p->tail; i != p->head; i++)
		buf[i % size] = p->buf[i % p->size];
	if (p->buf != p->own_buf)
		free(p->buf);
	p->buf = buf;
	p->size = size;
	return 1;
}

uint64_t lx_pipe_put(struct pipe *p, const uint8_t *src, uint64_t len)
{
	uint64_t n = 0;

	do {
		while (n < len && p->head - p->tail < p->size)
			p->buf[p->head++ % p->size] = src[n++];
	} while (n < len && pipe_grow(p));
	return n;
}

int lx_pipe_ready(const struct pipe *p, int writer, int events)
{
	if (!writer)
		return (p->head != p->tail ? (events & POLLIN) : 0) | (p->writers ? 0 : POLLHUP);
	return (p->head - p->tail < p->size ? (events & POLLOUT) : 0) | (p->readers ? 0 : POLLERR);
}
