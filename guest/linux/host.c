/*
 * Calls into the "files" host module over VM RPC (one call per request; the
 * data plane through Python, see docs/linux.md).  Single-threaded programs
 * only in part 1, so one request and one response buffer suffice.
 */
#include "linux.h"

/* A module bound on first use: its handle, or < 0 if the host has none (asked once). */
int lx_lazy_module(int *slot, const char *name)
{
	if (!*slot) {
		*slot = bind_module(name, VMRPC_VERSION(1, 0));
		if (*slot <= 0)
			*slot = -1;
	}
	return *slot;
}

long lx_module_call(int *slot, const char *name, uint32_t fn, const void *req, size_t len)
{
	int64_t result;
	long n;

	if (lx_lazy_module(slot, name) < 0)
		return -ENOSYS;
	n = perform_rpc(*slot, fn, req, len, &result, sizeof(result));
	return n == (long)sizeof(result) ? (long)result : -EIO;
}

static int files_handle;
static int data_handle; /* "files_data", or <= 0 if the host has none */
static uint8_t req_buf[VMRPC_MAX_PAYLOAD] __attribute__((aligned(16)));
static uint8_t resp_buf[VMRPC_MAX_PAYLOAD] __attribute__((aligned(16)));

int lx_host_init(void)
{
	files_handle = bind_module(LX_FILES_MODULE, VMRPC_VERSION(1, 0));
	data_handle = bind_module(LX_FILES_DATA_MODULE, VMRPC_VERSION(1, 0));
	return files_handle;
}

long lx_host(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, int64_t a3, const void *data,
	     size_t len, void *out, size_t cap, size_t *got)
{
	struct lx_req *r = (struct lx_req *)req_buf;
	long n;
	int64_t result;

	if (got)
		*got = 0;
	if (files_handle <= 0)
		return -ENOSYS;
	/* Open, stat and close are served in Rust when they can be (fastpath.c). */
	result = lx_host_fast(fn, a0, a1, a2, data, len, out, cap, got);
	if (result != -EOPNOTSUPP)
		return result;
	if (len > sizeof(req_buf) - sizeof(*r))
		return -E2BIG;
	r->a[0] = a0;
	r->a[1] = a1;
	r->a[2] = a2;
	r->a[3] = a3;
	r->a[4] = 0;
	r->a[5] = 0;
	if (len)
		memcpy(req_buf + sizeof(*r), data, len);
	n = perform_rpc(files_handle, fn, req_buf, sizeof(*r) + len, resp_buf, sizeof(resp_buf));
	if (n < (long)sizeof(int64_t))
		return -EIO;
	memcpy(&result, resp_buf, sizeof(result));
	n -= (long)sizeof(int64_t);
	if ((size_t)n > cap)
		n = (long)cap;
	if (n > 0 && out)
		memcpy(out, resp_buf + sizeof(int64_t), (size_t)n);
	if (got)
		*got = (size_t)n;
	return result;
}

long lx_host_path(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, const char *path,
		  const char *path2, void *out, size_t cap, size_t *got)
{
	static char both[2 * 4096 + 2];
	size_t l1 = strlen(path) + 1, l2 = path2 ? strlen(path2) + 1 : 0;

	if (l1 + l2 > sizeof(both))
		return -ENAMETOOLONG;
	memcpy(both, path, l1);
	if (path2)
		memcpy(both + l1, path2, l2);
	return lx_host(fn, a0, a1, a2, 0, both, l1 + l2, out, cap, got);
}

long lx_host_data(int write, int64_t h, void *buf, uint64_t len, int64_t off)
{
	struct lx_data_req r = {h, (uint64_t)(uintptr_t)buf, len, off};
	int64_t result;
	long n;

	if (data_handle <= 0)
		return -EOPNOTSUPP;
	/* The host copies up to 16 MiB in one go: wait for it spinning (the
	 * halt gate's ring-0 path costs more than the copy of a few MiB). */
	vmrpc_set_spin_us(len >> 8 > LX_HOST_SPIN_US ? (unsigned)(len >> 8) : LX_HOST_SPIN_US);
	n = perform_rpc(data_handle, write ? LXD_WRITE : LXD_READ, &r, sizeof(r), &result,
			sizeof(result));
	vmrpc_set_spin_us(LX_HOST_SPIN_US);
	return n == (long)sizeof(result) ? (long)result : -EOPNOTSUPP;
}
