/*
 * The native path operations (crates/vmm/src/linux/pathops.rs): openat of a
 * regular file for reading, newfstatat, fstat and close, served by the
 * "files_data" host module in Rust instead of the "files" module in Python
 * (about one RPC round trip instead of tens of microseconds of Python).  The
 * host answers -EOPNOTSUPP for what it leaves to Python (writes, directories,
 * an audit hook...), and lx_host then asks Python as before, so the same
 * request has one meaning on both paths.
 */
#include "linux.h"

#define STAT_SIZE 144

struct lx_path_req {
	int64_t a0; /* dir handle (openat, newfstatat) or handle (fstat, close) */
	int64_t flags;
	int64_t mode;
	uint64_t gpa; /* where the host writes struct stat */
};
_Static_assert(sizeof(struct lx_path_req) == 32, "agrees with dataplane.rs PATH_REQ_SIZE");

enum { LXD_OPENAT = 2, LXD_FSTATAT = 3, LXD_CLOSE = 4, LXD_FSTAT = 5 };
/* Set in the handles the host opened natively (dataplane.rs NATIVE_HANDLE_BIT):
 * only their close is worth asking there. */
#define LX_NATIVE_HANDLE (1ll << 40)

/* Closes of native handles are sent in batches (see close_many in dataplane.rs). */
#define LX_CLOSE_BATCH 32

static int fast_handle; /* 0: not bound yet; < 0: the host has no files_data */
static int64_t pending_close[LX_CLOSE_BATCH];
static unsigned pending_closes;
static int paths_in_python; /* the host keeps open/stat in Python (audit hook) */
static uint8_t req_buf[sizeof(struct lx_path_req) + 2 * 4096 + 2] __attribute__((aligned(16)));

static long native_fn(uint32_t fn, size_t cap)
{
	switch (fn) {
	case LXF_OPENAT:
		return paths_in_python ? -1 : LXD_OPENAT;
	case LXF_CLOSE:
		return LXD_CLOSE;
	case LXF_FSTATAT:
		return cap >= STAT_SIZE && !paths_in_python ? LXD_FSTATAT : -1;
	case LXF_FSTAT:
		return cap >= STAT_SIZE ? LXD_FSTAT : -1;
	default:
		return -1;
	}
}

void lx_host_fast_flush(void)
{
	int64_t result;
	unsigned n = pending_closes;

	if (!n || fast_handle <= 0)
		return;
	pending_closes = 0;
	(void)perform_rpc(fast_handle, LXD_CLOSE, pending_close, n * sizeof(pending_close[0]),
			  &result, sizeof(result));
}

long lx_host_fast(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, const void *data, size_t len,
		  void *out, size_t cap, size_t *got)
{
	struct lx_path_req *r = (struct lx_path_req *)req_buf;
	long nfn = native_fn(fn, cap);
	int64_t result;
	long n;

	if (nfn < 0 || len > sizeof(req_buf) - sizeof(*r))
		return -EOPNOTSUPP;
	if (nfn == LXD_CLOSE && !(a0 & LX_NATIVE_HANDLE))
		return -EOPNOTSUPP;
	if (lx_lazy_module(&fast_handle, LX_FILES_DATA_MODULE) < 0)
		return -EOPNOTSUPP;
	if (nfn == LXD_CLOSE) {
		/* Only a read-only regular file of ours: nothing to see until the batch is full. */
		pending_close[pending_closes++] = a0;
		if (pending_closes < LX_CLOSE_BATCH)
			return 0;
		pending_closes = 0;
		(void)perform_rpc(fast_handle, LXD_CLOSE, pending_close, sizeof(pending_close), &result,
				  sizeof(result));
		return 0;
	}
	r->a0 = a0;
	r->flags = a1;
	r->mode = a2;
	r->gpa = (uint64_t)(uintptr_t)out;
	if (len)
		memcpy(req_buf + sizeof(*r), data, len);
	n = perform_rpc(fast_handle, (uint32_t)nfn, req_buf, sizeof(*r) + len, &result,
			sizeof(result));
	if (n != (long)sizeof(result))
		return -EOPNOTSUPP;
	if (result == -ENOSYS && (nfn == LXD_OPENAT || nfn == LXD_FSTATAT)) {
		paths_in_python = 1;
		return -EOPNOTSUPP;
	}
	if (result >= 0 && got && (nfn == LXD_FSTATAT || nfn == LXD_FSTAT))
		*got = STAT_SIZE;
	return (long)result;
}
