/*
 * Interrupt setup: VMRPC_IRQ_VECTOR, which the host uses to end a hlt; the
 * APIC spurious vector; #UD, which carries the runtime's ring-3 -> ring-0
 * calls (see vmrpc/cpu.h); and every other exception (0..31), whose handler
 * reports the crash to the VMM with the faulting registers (irq.S).  Ring-0
 * code is emulated on PVM, but a crash happens once.
 */
#include "internal.h"

struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_hi;
	uint32_t zero;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate size");

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#define GATE_KERNEL 0x8E /* P=1, DPL=0, 64-bit interrupt gate */
#define UD_VECTOR 6

static void set_gate(struct idt_gate *idt, unsigned vector, void (*handler)(void), uint8_t type)
{
	uint64_t addr = (uint64_t)(uintptr_t)handler;

	idt[vector].offset_lo = (uint16_t)addr;
	idt[vector].selector = VMRPC_KERNEL_CS;
	idt[vector].ist = 0;
	idt[vector].type_attr = type;
	idt[vector].offset_mid = (uint16_t)(addr >> 16);
	idt[vector].offset_hi = (uint32_t)(addr >> 32);
	idt[vector].zero = 0;
}

/*
 * The VMM loaded every vCPU's IDTR with an empty IDT page (lidt is privileged
 * and we run in ring 3); filling its gates is plain memory writes.  Called
 * once, on vCPU 0, before the others are released.
 */
void rt_idt_init(void)
{
	struct idt_ptr p;
	struct idt_gate *idt;

	__asm__ volatile("sidt %0" : "=m"(p));
	idt = (struct idt_gate *)(uintptr_t)p.base;
	set_gate(idt, VMRPC_IRQ_VECTOR, rt_irq_stub_vmrpc, GATE_KERNEL);
	set_gate(idt, RT_SPURIOUS_VECTOR, rt_irq_stub_spurious, GATE_KERNEL);
	set_gate(idt, UD_VECTOR, rt_ud_stub, GATE_KERNEL);
	for (unsigned v = 0; v < RT_EXCEPTIONS; v++)
		if (rt_exc_stubs[v])
			set_gate(idt, v, rt_exc_stubs[v], GATE_KERNEL);
}
