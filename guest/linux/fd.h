/*
 * The open file, shared by the fd table (fd.c) and host-file I/O (fileio.c).
 */
#ifndef LX_FD_H
#define LX_FD_H

#include "linux.h"

struct pipe;

struct ofile {
	int kind;
	int refs;
	int64_t host;
	int flags; /* status flags (O_NONBLOCK, access mode) */
	struct pipe *pipe;
};

/*
 * pipe.c: the buffers behind OF_PIPE_R / OF_PIPE_W (a new pipe has one reader
 * and one writer; it is freed when both ends are closed).  take/put move what
 * fits now (put grows a forked child's full pipe); ready answers POLL* bits.
 */
struct pipe *lx_pipe_new(void);
void lx_pipe_close_end(struct pipe *p, int writer);
int lx_pipe_readers(const struct pipe *p);
int lx_pipe_writers(const struct pipe *p);
uint64_t lx_pipe_take(struct pipe *p, uint8_t *dst, uint64_t len);
uint64_t lx_pipe_put(struct pipe *p, const uint8_t *src, uint64_t len);
int lx_pipe_ready(const struct pipe *p, int writer, int events);

/* fileio.c: read or write a host file's data at off (-1: at its position). */
long host_read(struct ofile *of, uint8_t *dst, uint64_t len, int64_t off);
long host_write(struct ofile *of, const uint8_t *src, uint64_t len, int64_t off);

#endif
