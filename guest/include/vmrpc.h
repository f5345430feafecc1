/*
 * The one header a vmrpc guest includes: the ABI, the freestanding runtime
 * (console, heap, strings, CPU helpers) and the VM RPC client API.
 *
 * Build a guest with the flags printed by `make -s -C guest print-cflags` and
 * link it with guest/rt/guest.ld, guest/build/crt0.o and guest/build/libvmrpc.a.
 */
#ifndef VMRPC_H
#define VMRPC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The SDK's standard headers (include/libc): each function is declared once, there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmrpc/abi.h>
#include <vmrpc/cpu.h>
#include <vmrpc/spinlock.h>
#include <vmrpc/evq.h>

#define RT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- runtime: CPUs and boot ------------------------------------------------ */

/* Index of the calling vCPU (0 .. rt_cpu_count()-1). */
unsigned rt_cpu_id(void);
/*
 * Index of the calling thread (0 .. VMRPC_MAX_CHANNELS-1): its VM RPC channel,
 * errno and socket scratch buffer.  The vCPU index in the bare runtime (one
 * thread per vCPU); a Linux program's thread slot in the personality, whose
 * threads move between vCPUs (a GS word: RT_GS_THREAD).
 */
unsigned rt_thread_id(void);
/* Number of vCPUs in the VM (boot_info.vcpu_count). */
unsigned rt_cpu_count(void);
const struct vmrpc_boot_info *rt_boot_info(void);
/* The guest's arguments, as main receives them; usable from ap_main too. */
int rt_argc(void);
char **rt_argv(void);

/*
 * Called on every vCPU except 0 once the runtime is initialised.  The default
 * (weak) definition does nothing; the vCPU parks when ap_main returns.
 */
void ap_main(unsigned cpu);

/* Stops this vCPU only (halted forever, through RT_PARK_VECTOR). */
_Noreturn void rt_park(void);

/* ---- console, heap, strings ------------------------------------------------------ */

/* printf and friends are <stdio.h>'s, malloc and exit <stdlib.h>'s, memcpy and the
 * string functions <string.h>'s (all included above). */

/* Gives malloc [start, start + len) too (memory nothing else uses, ever). */
void rt_heap_add(void *start, size_t len);

/* ---- time and randomness -------------------------------------------------------- */

/* TSC frequency from boot info; 0 if the VMM did not know it. */
uint64_t rt_tsc_khz(void);
/* Converts TSC cycles to nanoseconds; 0 if the TSC frequency is unknown. */
uint64_t rt_ns_from_tsc(uint64_t cycles);
/* xorshift64*: fast, not cryptographic.  A zero state is replaced by a constant. */
uint64_t rt_rand64(uint64_t *state);

/* ---- VM RPC client (lib/rpc.c) ---------------------------------------------------- */

/* Binds a host module; returns a handle (> 0) or a VMRPC_E* code. */
int bind_module(const char *name, uint32_t version);
/* Returns 0 or a VMRPC_E* code. */
int unbind_module(int handle);
/*
 * Calls function `function` of module `handle` on this vCPU's channel and
 * waits for the answer.  Returns the response length (>= 0; at most resp_cap
 * bytes are copied to resp) or a VMRPC_E* code.
 */
long perform_rpc(int handle, uint32_t function, const void *req, size_t req_len, void *resp,
		 size_t resp_cap);
/* A short name for a VMRPC_E* code ("ok" for values >= 0). */
const char *vmrpc_strerror(int err);
/*
 * How long perform_rpc polls for the response before it sleeps (hlt until the
 * host's interrupt), in microseconds; default 200.  0 sleeps at once.
 */
void vmrpc_set_spin_us(unsigned us);
/*
 * on != 0: after the spin, wait for the answer in the host (VMRPC_MMIO_RPC_WAIT,
 * one exit; the vCPU runs other threads meanwhile) instead of the ring-0 halt
 * gate.  The Linux personality's threads wait so; bare guests halt.
 */
void vmrpc_set_wait_in_host(int on);
/* Largest request/response the host accepts, or VMRPC_ENODEV. */
long vmrpc_max_payload(void);

/* ---- sockets (lib/sockets/): POSIX-style, outsourced to the host ------------------ */

#include <vmrpc/socket.h>

#endif /* VMRPC_H */
