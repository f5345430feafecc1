/*
 * Calls to the "sockets" host module: binding it once, the per-thread scratch
 * buffer, and errno from VM RPC failures and host answers.
 */
#include "internal.h"

static rt_spinlock_t bind_lock = RT_SPINLOCK_INIT;
static int host_handle; /* 0: not bound yet; > 0: handle; < 0: VMRPC_E* */
static uint8_t *scratch[VMRPC_MAX_CHANNELS];

void vmrpc_sock_set_thread_scratch(unsigned thread, uint8_t *buf)
{
	if (thread < VMRPC_MAX_CHANNELS)
		scratch[thread] = buf;
}

/* This thread's buffer for one request or response: per thread, not per vCPU,
 * since a thread waiting for its answer lends its vCPU to others. */
uint8_t *cpu_scratch(void)
{
	unsigned t = rt_thread_id();

	if (t >= VMRPC_MAX_CHANNELS)
		return NULL;
	if (!scratch[t])
		scratch[t] = malloc(VMRPC_MAX_PAYLOAD);
	return scratch[t];
}

static int host_module(void)
{
	int h = __atomic_load_n(&host_handle, __ATOMIC_ACQUIRE);

	if (h)
		return h;
	rt_spin_lock(&bind_lock);
	h = host_handle;
	if (!h) {
		h = bind_module(VMRPC_SOCK_MODULE_NAME,
				VMRPC_VERSION(VMRPC_SOCK_MODULE_MAJOR, VMRPC_SOCK_MODULE_MINOR));
		if (h == 0)
			h = VMRPC_EINVAL;
		__atomic_store_n(&host_handle, h, __ATOMIC_RELEASE);
	}
	rt_spin_unlock(&bind_lock);
	return h;
}

static int vmrpc_errno(long rc)
{
	switch (rc) {
	case VMRPC_ENOMODULE:
	case VMRPC_EGONE:
	case VMRPC_ENODEV: return ENETDOWN;
	case VMRPC_ESHUTDOWN: return ESHUTDOWN;
	case VMRPC_ETOOBIG: return EMSGSIZE;
	default: return EIO;
	}
}

/*
 * Calls host function fn with req (req_len bytes, may be the scratch buffer)
 * and answers into resp (resp_cap bytes, may be the scratch buffer).  Returns
 * 0 with *result and *resp_len set, or -1 with errno set when the call itself
 * failed (no module, VM stopping, malformed answer).
 */
int host_rpc(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
	     size_t *resp_len, int32_t *result)
{
	int h = host_module();
	long n;

	if (h < 0)
		return fail(vmrpc_errno(h));
	stat_add(&stats.host_rpcs, 1);
	n = perform_rpc(h, fn, req, req_len, resp, resp_cap);
	if (n < 0)
		return fail(vmrpc_errno(n));
	if (n < (long)sizeof(struct vmrpc_sock_resp) || (size_t)n > resp_cap)
		return fail(EIO);
	memcpy(result, resp, sizeof(*result));
	if (resp_len)
		*resp_len = (size_t)n;
	return 0;
}

/* host_rpc, and a negative result becomes -1 with errno = -result. */
long host_call(uint32_t fn, const void *req, size_t req_len, void *resp, size_t resp_cap,
	       size_t *resp_len)
{
	int32_t result;

	if (host_rpc(fn, req, req_len, resp, resp_cap, resp_len, &result) < 0)
		return -1;
	if (result < 0)
		return fail(result < -4095 ? EIO : -result);
	return result;
}

/* A call whose answer is a plain struct vmrpc_sock_resp. */
long host_simple(uint32_t fn, const void *req, size_t req_len)
{
	struct vmrpc_sock_resp r;

	return host_call(fn, req, req_len, &r, sizeof(r), NULL);
}

/*
 * One zero-copy attempt (VMRPC_SOCK_FN_SEND_BUF / RECV_BUF): the host moves bytes
 * straight between its socket and our buffer, never waiting.  Returns the bytes
 * moved or -errno; -EAGAIN: nothing now; -EOPNOTSUPP: never for this socket.
 */
long host_zero_copy(struct gsock *s, uint32_t fn, const void *buf, size_t len)
{
	struct vmrpc_sock_buf_req req;
	struct vmrpc_sock_resp r;
	int32_t result;

	req.handle = s->host;
	req.len = (uint32_t)(len < VMRPC_SOCK_MAX_BUF ? len : VMRPC_SOCK_MAX_BUF);
	req.gpa = sock_gpa(buf);
	if (host_rpc(fn, &req, sizeof(req), &r, sizeof(r), NULL, &result) < 0)
		return -errno;
	if (result == -EOPNOTSUPP)
		s->no_zero_copy = 1;
	return result;
}

/*
 * One socket I/O exit (VMRPC_MMIO_SOCKIO, crates/vmm/src/devices/sock_io.rs):
 * this vCPU's host thread moves the bytes itself, straight between the host
 * socket and buf (a receive: then buf2, in the same host call), waiting as
 * timeout_ms says; flags are VMRPC_SOCKIO_*.  At most VMRPC_SOCKIO_MAX bytes in
 * all.  Returns the bytes moved, 0 at end of stream, or -errno; -EOPNOTSUPP:
 * never for this socket (TLS, no native data plane), use the module's calls.
 */
long host_sockio(struct gsock *s, uint32_t flags, const void *buf, size_t len, void *buf2,
		 size_t len2, int timeout_ms)
{
	struct vmrpc_sockio_req req;
	int h = host_module();
	int64_t rc;

	if (h < 0)
		return -vmrpc_errno(h);
	if (len > VMRPC_SOCKIO_MAX)
		len = VMRPC_SOCKIO_MAX;
	if (len2 > VMRPC_SOCKIO_MAX - len)
		len2 = VMRPC_SOCKIO_MAX - len;
	req.module = (uint32_t)h;
	req.handle = s->host;
	req.flags = flags;
	req.timeout_ms = timeout_ms;
	req.gpa = sock_gpa(buf);
	req.len = (uint32_t)len;
	req.len2 = (uint32_t)len2;
	req.gpa2 = sock_gpa(buf2);
	req.result = -EOPNOTSUPP; /* what a VMM without the device leaves */
	stat_add(&stats.host_exits, 1);
	rt_barrier(); /* the request is in memory before the exit reads it */
	mmio_write64(VMRPC_MMIO_SOCKIO, sock_gpa(&req));
	rt_barrier(); /* and the host's answer is read after it */
	rc = req.result;
	if (rc == -EOPNOTSUPP)
		s->no_zero_copy = 1;
	return (long)rc;
}
