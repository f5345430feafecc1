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

#include <vmrpc/evq_calls.h>

#ifdef __cplusplus
}
#endif

#endif /* VMRPC_LINUX_H */
