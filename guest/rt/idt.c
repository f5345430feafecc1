/*
 * Interrupt setup.  Only two vectors exist: VMRPC_IRQ_VECTOR, which the host
 * uses to end a hlt, and the APIC spurious vector.  Exceptions deliberately
 * have no handlers: they escalate to a triple fault, which the VMM reports
 * with the register state.
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

/* Shared by all vCPUs; not-present entries are all zero. */
static struct idt_gate idt[256] __attribute__((aligned(4096)));

#define GATE_INTERRUPT_PRESENT 0x8E /* P=1, DPL=0, 64-bit interrupt gate */

static void set_gate(unsigned vector, void (*handler)(void))
{
	uint64_t addr = (uint64_t)(uintptr_t)handler;
	uint16_t cs;

	/* Use whatever code selector the VMM gave us rather than assume 0x08. */
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[vector].offset_lo = (uint16_t)addr;
	idt[vector].selector = cs;
	idt[vector].ist = 0;
	idt[vector].type_attr = GATE_INTERRUPT_PRESENT;
	idt[vector].offset_mid = (uint16_t)(addr >> 16);
	idt[vector].offset_hi = (uint32_t)(addr >> 32);
	idt[vector].zero = 0;
}

void rt_idt_init(void)
{
	set_gate(VMRPC_IRQ_VECTOR, rt_irq_stub_vmrpc);
	set_gate(RT_SPURIOUS_VECTOR, rt_irq_stub_spurious);
}

void rt_cpu_irq_init(void)
{
	struct idt_ptr p = { .limit = sizeof(idt) - 1, .base = (uint64_t)(uintptr_t)idt };

	__asm__ volatile("lidt %0" : : "m"(p) : "memory");
	/* The VMM put the APIC in x2APIC mode; it still needs the software
	 * enable bit (SVR bit 8) to deliver anything.  Spurious vector 0xFF. */
	wrmsr(MSR_X2APIC_TPR, 0);
	wrmsr(MSR_X2APIC_SVR, 0x100u | RT_SPURIOUS_VECTOR);
}

/* Called from rt_irq_stub_vmrpc with interrupts off. */
void rt_irq_vmrpc(void);
void rt_irq_vmrpc(void)
{
	rt_this_cpu()->irq_count++;
	wrmsr(MSR_X2APIC_EOI, 0);
}
