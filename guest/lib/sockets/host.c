/*
 * Calls to the "sockets" host module: binding it once, the per-vCPU scratch
 * buffer, and errno from VM RPC failures and host answers.
 */
#include "internal.h"

static rt_spinlock_t bind_lock = RT_SPINLOCK_INIT;
static int host_handle; /* 0: not bound yet; > 0: handle; < 0: VMRPC_E* */
static uint8_t *scratch[VMRPC_MAX_VCPUS];

/* This vCPU's buffer for one request or response. */
uint8_t *cpu_scratch(void)
{
	unsigned cpu = rt_cpu_id();

	if (cpu >= VMRPC_MAX_VCPUS)
		return NULL;
	if (!scratch[cpu])
		scratch[cpu] = malloc(VMRPC_MAX_PAYLOAD);
	return scratch[cpu];
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
	req.gpa = (uint64_t)(uintptr_t)buf; /* guest memory is identity-mapped */
	if (host_rpc(fn, &req, sizeof(req), &r, sizeof(r), NULL, &result) < 0)
		return -errno;
	if (result == -EOPNOTSUPP)
		s->no_zero_copy = 1;
	return result;
}
