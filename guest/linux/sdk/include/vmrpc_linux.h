/*
 * VM RPC for Linux programs run by vmrpc.LinuxVM (docs/linux.md, "VM RPC from
 * Linux programs").  Link libvmrpc_linux.a into a static program built with
 * musl-gcc or gcc; it uses no libc and declares nothing libc does:
 *
 *   musl-gcc -static -O2 -I "$SDK/linux/include" prog.c "$SDK/linux/lib/libvmrpc_linux.a"
 *
 * where $SDK is `python -c 'import vmrpc.linux.sdk as s; print(s.sdk_dir())'`, or
 * `vmrpc build-guest --linux prog.c`.  The calls mirror the bare guest SDK's
 * (<vmrpc.h>, <vmrpc/evq.h>); each is one system call into the personality.
 * Outside vmrpc (a real kernel) every call returns VMRPC_ENODEV.
 */
#ifndef VMRPC_LINUX_H
#define VMRPC_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include <vmrpc/abi.h>
#include <vmrpc/linux_calls.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Binds a host module; returns a handle (> 0) or a VMRPC_E* code. */
int bind_module(const char *name, uint32_t version);
/* Returns 0 or a VMRPC_E* code. */
int unbind_module(int handle);
/*
 * Calls function `function` of module `handle` and waits for the answer.
 * Returns the response length (at most resp_cap bytes are copied) or VMRPC_E*.
 */
long perform_rpc(int handle, uint32_t function, const void *req, size_t req_len, void *resp,
		 size_t resp_cap);
/* Largest request/response the host accepts, or VMRPC_ENODEV. */
long vmrpc_max_payload(void);
/* A short name for a VMRPC_E* code ("ok" for values >= 0). */
const char *vmrpc_strerror(int err);

/* An event queue opened by evq_open; the rings stay in the personality. */
struct vmrpc_evq {
	int queue;               /* the personality's queue number */
	uint32_t entries;        /* slots per ring */
	uint32_t max_event_size; /* payload bytes per event */
};

/* Opens the host's queue `name`; returns 0 and fills *q, or a VMRPC_E* code. */
int evq_open(const char *name, struct vmrpc_evq *q);
/* Sends one event (waits while the queue is full); 0 or VMRPC_E*. */
int put_event(struct vmrpc_evq *q, const void *data, size_t len);
/* As put_event, but VMRPC_EFULL at once if the queue is full. */
int try_put_event(struct vmrpc_evq *q, const void *data, size_t len);
/* Receives one event (waits while the queue is empty); its length or VMRPC_E*. */
long get_event(struct vmrpc_evq *q, void *buf, size_t cap);
/* As get_event, but VMRPC_EEMPTY at once if the queue is empty. */
long try_get_event(struct vmrpc_evq *q, void *buf, size_t cap);
/* How long a blocked put/get polls before the vCPU halts, in microseconds. */
void evq_set_spin_us(unsigned us);

#ifdef __cplusplus
}
#endif

#endif /* VMRPC_LINUX_H */
