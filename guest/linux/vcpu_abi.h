/*
 * vCPUs started on demand (crates/vmm/src/vm/launch.rs): a LinuxVM starts
 * vCPU 0 only.  Before the personality hands vCPU i its first thread, it
 * reads the 32-bit register LX_MMIO_VCPU_START + 4 * i: the host creates and
 * starts that vCPU (it boots into lx_thread_idle) and answers 0, or 1 when
 * it cannot.  Reading it again for a running vCPU answers 0 and does nothing.
 *
 * The CPU time of the vCPUs' host threads (crates/vmm/src/vm/cpu_clock.rs),
 * in nanoseconds, by a 64-bit read of LX_MMIO_CPU_CLOCK plus: _THREAD, the
 * reading vCPU's thread; _ALL, every vCPU thread of the VM (getrusage).
 */
#ifndef LX_VCPU_ABI_H
#define LX_VCPU_ABI_H

#include <stdint.h>

#define LX_MMIO_VCPU_START (0xd0000000ull + 0x101000u)
#define LX_MMIO_CPU_CLOCK (0xd0000000ull + 0x102000u)
#define LX_CPU_CLOCK_THREAD 0u
#define LX_CPU_CLOCK_ALL 8u

#endif
