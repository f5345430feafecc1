/*
 * Interrupt entry stubs.  Interrupts arrive on the current stack (no IST, all
 * code runs at CPL 0), which is why everything is built with -mno-red-zone.
 */

	.text

/*
 * VMRPC_IRQ_VECTOR: the host's "your response/event is ready" wakeup.  Its only
 * effect is ending a hlt; the C side counts it and sends EOI.  Every GPR is
 * saved because the interrupted code may be anywhere.
 *
 * Stack alignment: the CPU aligns rsp to 16 before pushing its 5-word frame
 * (40 bytes); 15 pushes (120 bytes) make 160 in all, so rsp is 16-aligned at
 * the call, as the SysV ABI wants.
 */
	.globl rt_irq_stub_vmrpc
	.type rt_irq_stub_vmrpc, @function
rt_irq_stub_vmrpc:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld			/* C code assumes DF=0; iretq restores the old RFLAGS */
	call rt_irq_vmrpc
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	iretq
	.size rt_irq_stub_vmrpc, . - rt_irq_stub_vmrpc

/* Spurious-interrupt vector: the APIC wants no EOI for it; just return. */
	.globl rt_irq_stub_spurious
	.type rt_irq_stub_spurious, @function
rt_irq_stub_spurious:
	iretq
	.size rt_irq_stub_spurious, . - rt_irq_stub_spurious

	.section .note.GNU-stack, "", @progbits
