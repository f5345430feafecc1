/* Runtime-private declarations shared between the files of rt/. */
#ifndef RT_INTERNAL_H
#define RT_INTERNAL_H

#include <vmrpc.h>

#include "layout.h"

#define MSR_GS_BASE 0xC0000101u
#define MSR_X2APIC_TPR 0x808u
#define MSR_X2APIC_EOI 0x80Bu
#define MSR_X2APIC_SVR 0x80Fu

#define RT_SPURIOUS_VECTOR 0xFFu

/*
 * Per-vCPU data, reached through the GS base.  `cpu` must stay the first field:
 * rt_cpu_id() reads it with a single %gs:0 load.
 */
struct rt_percpu {
	uint32_t cpu;
	uint32_t _pad;
	struct rt_percpu *self;
	uint64_t irq_count; /* VMRPC_IRQ_VECTOR interrupts taken; for debugging */
} __attribute__((aligned(64)));

extern const struct vmrpc_boot_info *rt_bootinfo;
extern char _end[]; /* from guest.ld: end of .bss */

static inline struct rt_percpu *rt_this_cpu(void)
{
	struct rt_percpu *p;
	__asm__ volatile("movq %%gs:8, %0" : "=r"(p));
	return p;
}

void rt_console_init(void);
void rt_heap_init(uintptr_t start, uintptr_t end);
void rt_idt_init(void);      /* builds the shared IDT (vCPU 0, once) */
void rt_cpu_irq_init(void);  /* lidt + x2APIC software enable, every vCPU */

/* printf core: formats into a sink; returns the full formatted length. */
struct rt_sink {
	void (*put)(struct rt_sink *sink, const char *s, size_t n);
};
int rt_vformat(struct rt_sink *sink, const char *fmt, va_list ap);

/* Interrupt entry stubs (irq.S). */
void rt_irq_stub_vmrpc(void);
void rt_irq_stub_spurious(void);

#endif /* RT_INTERNAL_H */
