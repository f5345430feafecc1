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

/* fileio.c: read or write a host file's data at off (-1: at its position). */
long host_read(struct ofile *of, uint8_t *dst, uint64_t len, int64_t off);
long host_write(struct ofile *of, const uint8_t *src, uint64_t len, int64_t off);

#endif
