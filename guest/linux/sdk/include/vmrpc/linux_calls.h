/*
 * The Linux personality's private system calls: how a Linux program reaches VM
 * RPC (guest/linux/rpc.c serves them; libvmrpc_linux.a makes them).  Numbers
 * below 512, which Linux leaves unused, so that rewritten sites (`call *%rax`
 * into the sled at address 0) reach them too.  A real Linux kernel answers
 * -ENOSYS.  Every call returns a VMRPC_E* code (< 0) on failure.
 */
#ifndef VMRPC_LINUX_CALLS_H
#define VMRPC_LINUX_CALLS_H

#define VMRPC_LINUX_NR_BIND 500        /* name, version -> handle */
#define VMRPC_LINUX_NR_UNBIND 501      /* handle -> 0 */
#define VMRPC_LINUX_NR_RPC 502         /* handle, fn, req, req_len, resp, resp_cap -> length */
#define VMRPC_LINUX_NR_MAX_PAYLOAD 503 /* -> bytes */
#define VMRPC_LINUX_NR_EVQ_OPEN 504    /* name, struct vmrpc_linux_evq_info * -> queue */
#define VMRPC_LINUX_NR_EVQ_PUT 505     /* queue, data, len, nonblock -> 0 */
#define VMRPC_LINUX_NR_EVQ_GET 506     /* queue, buf, cap, nonblock -> length */
#define VMRPC_LINUX_NR_EVQ_SPIN 507    /* microseconds -> 0 */
#define VMRPC_LINUX_NR_SNAPSHOT 508    /* -> 0 in a VM started from the snapshot */
#define VMRPC_LINUX_NR_FIRST VMRPC_LINUX_NR_BIND
#define VMRPC_LINUX_NR_LAST VMRPC_LINUX_NR_SNAPSHOT

/* What VMRPC_LINUX_NR_EVQ_OPEN fills in. */
struct vmrpc_linux_evq_info {
	unsigned int entries;        /* slots per ring */
	unsigned int max_event_size; /* payload bytes per event */
};

#endif /* VMRPC_LINUX_CALLS_H */
