/*
 * libvmrpc_linux.a: VM RPC for Linux programs (include/vmrpc_linux.h).  Each
 * call is one private system call served by the personality (guest/linux/rpc.c);
 * no libc function is used, so the same archive links with musl and glibc.
 */
#include <vmrpc_linux.h>

#define LINUX_ENOSYS 38

static long vmrpc_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
	register long r10 __asm__("r10") = a3;
	register long r8 __asm__("r8") = a4;
	register long r9 __asm__("r9") = a5;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	/* A real kernel does not know the call: there is no VM RPC here. */
	return ret == -LINUX_ENOSYS ? VMRPC_ENODEV : ret;
}

int bind_module(const char *name, uint32_t version)
{
	return (int)vmrpc_syscall6(VMRPC_LINUX_NR_BIND, (long)name, (long)version, 0, 0, 0, 0);
}

int unbind_module(int handle)
{
	return (int)vmrpc_syscall6(VMRPC_LINUX_NR_UNBIND, handle, 0, 0, 0, 0, 0);
}

long perform_rpc(int handle, uint32_t function, const void *req, size_t req_len, void *resp,
		 size_t resp_cap)
{
	return vmrpc_syscall6(VMRPC_LINUX_NR_RPC, handle, (long)function, (long)req, (long)req_len,
			      (long)resp, (long)resp_cap);
}

long vmrpc_max_payload(void)
{
	return vmrpc_syscall6(VMRPC_LINUX_NR_MAX_PAYLOAD, 0, 0, 0, 0, 0, 0);
}

int evq_open(const char *name, struct vmrpc_evq *q)
{
	struct vmrpc_linux_evq_info info = {0, 0};
	long r = vmrpc_syscall6(VMRPC_LINUX_NR_EVQ_OPEN, (long)name, (long)&info, 0, 0, 0, 0);

	if (r < 0)
		return (int)r;
	q->queue = (int)r;
	q->entries = info.entries;
	q->max_event_size = info.max_event_size;
	return 0;
}

static long evq_put(struct vmrpc_evq *q, const void *data, size_t len, int nonblock)
{
	return vmrpc_syscall6(VMRPC_LINUX_NR_EVQ_PUT, q->queue, (long)data, (long)len, nonblock, 0,
			      0);
}

static long evq_get(struct vmrpc_evq *q, void *buf, size_t cap, int nonblock)
{
	return vmrpc_syscall6(VMRPC_LINUX_NR_EVQ_GET, q->queue, (long)buf, (long)cap, nonblock, 0, 0);
}

int put_event(struct vmrpc_evq *q, const void *data, size_t len)
{
	return (int)evq_put(q, data, len, 0);
}

int try_put_event(struct vmrpc_evq *q, const void *data, size_t len)
{
	return (int)evq_put(q, data, len, 1);
}

long get_event(struct vmrpc_evq *q, void *buf, size_t cap)
{
	return evq_get(q, buf, cap, 0);
}

long try_get_event(struct vmrpc_evq *q, void *buf, size_t cap)
{
	return evq_get(q, buf, cap, 1);
}

void evq_set_spin_us(unsigned us)
{
	vmrpc_syscall6(VMRPC_LINUX_NR_EVQ_SPIN, (long)us, 0, 0, 0, 0, 0);
}
