/*
 * vCPUs started on demand (crates/vmm/src/vm/launch.rs): a LinuxVM starts
 * vCPU 0 only.  Before the personality hands vCPU i its first thread, it
 * reads the 32-bit register LX_MMIO_VCPU_START + 4 * i: the host creates and
 * starts that vCPU (it boots into lx_thread_idle) and answers 0, or 1 when
 * it cannot.  Reading it again for a running vCPU answers 0 and does nothing.
 */
#ifndef LX_VCPU_ABI_H
#define LX_VCPU_ABI_H

#include <stdint.h>

#define LX_MMIO_VCPU_START (0xd0000000ull + 0x101000u)

#endif
