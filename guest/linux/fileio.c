/*
 * Data of host files (fd.c's OF_HOST open files): regular files through the
 * native data plane in big pieces, the rest through the files module in
 * LX_CHUNK pieces.
 */
#include "fd.h"

/*
 * Regular files go through the native data plane in big pieces; what it does
 * not serve (stdio, directories) goes to the files module in LX_CHUNK pieces.
 * Returns -EOPNOTSUPP, having moved nothing, when the plane does not serve it.
 */
static long plane_io(int write, struct ofile *of, uint8_t *buf, uint64_t len, int64_t off)
{
	uint64_t done = 0;

	if (of->host < 3)
		return -EOPNOTSUPP;
	while (done < len) {
		uint64_t n = len - done < LX_DATA_MAX ? len - done : LX_DATA_MAX;
		long r = lx_host_data(write, of->host, buf + done, n, off < 0 ? -1 : off + (int64_t)done);
		if (r == -EOPNOTSUPP && !done)
			return r;
		if (r < 0)
			return done ? (long)done : r;
		done += (uint64_t)r;
		if ((uint64_t)r < n)
			break;
	}
	return (long)done;
}

long host_read(struct ofile *of, uint8_t *dst, uint64_t len, int64_t off)
{
	uint64_t done = 0;
	long fast = plane_io(0, of, dst, len, off);

	if (fast != -EOPNOTSUPP)
		return fast;

	while (done < len) {
		uint64_t want = len - done < LX_CHUNK ? len - done : LX_CHUNK;
		size_t got;
		long r = off < 0 ? lx_host(LXF_READ, of->host, (int64_t)want, 0, 0, NULL, 0,
					   dst + done, want, &got)
				 : lx_host(LXF_PREAD, of->host, (int64_t)want, off + (int64_t)done,
					   0, NULL, 0, dst + done, want, &got);
		if (r < 0)
			return done ? (long)done : r;
		done += got;
		if (got < want)
			break; /* end of file, or a terminal/pipe with less ready */
	}
	return (long)done;
}

long host_write(struct ofile *of, const uint8_t *src, uint64_t len, int64_t off)
{
	uint64_t done = 0;
	long fast = plane_io(1, of, (uint8_t *)(uintptr_t)src, len, off);

	if (fast != -EOPNOTSUPP)
		return fast;

	while (done < len) {
		uint64_t n = len - done < LX_CHUNK ? len - done : LX_CHUNK;
		long r = off < 0 ? lx_host(LXF_WRITE, of->host, 0, 0, 0, src + done, n, NULL, 0, NULL)
				 : lx_host(LXF_PWRITE, of->host, off + (int64_t)done, 0, 0, src + done,
					   n, NULL, 0, NULL);
		if (r < 0)
			return done ? (long)done : r;
		done += (uint64_t)r;
		if ((uint64_t)r < n)
			break;
	}
	return (long)done;
}
