/*
 * Constants shared by the entry stub (assembly) and the C runtime.  abi.h holds
 * C declarations and cannot be included from .S files, so start.c checks that
 * these agree with it.
 */
#ifndef RT_LAYOUT_H
#define RT_LAYOUT_H

#define RT_MAX_VCPUS 8           /* == VMRPC_MAX_VCPUS, checked in start.c */
#define RT_STACK_SHIFT 16        /* 64 KiB per vCPU */
#define RT_STACK_SIZE (1 << RT_STACK_SHIFT)

#define RT_MMIO_CRASH 0xd0006000 /* == VMRPC_MMIO_CRASH, checked in start.c */
/* GS words: the vCPU index (the VMM writes it), the thread index (rt_thread_id). */
#define RT_GS_CPU 0
#define RT_GS_THREAD 4
#define RT_EXCEPTIONS 32         /* vectors 0..31 get crash-report handlers */

#endif
