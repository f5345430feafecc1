/*
 * Ring-0 entry stubs.  The guest runs in ring 3; interrupts and the runtime's
 * `int` gates switch to the vCPU's ring-0 stack (TSS.RSP0, set by the VMM).
 * An interrupt taken inside rt_halt_stub arrives already in ring 0, on the
 * current stack, which is why everything is built with -mno-red-zone.
 */

	.text

/*
 * VMRPC_IRQ_VECTOR: the host's "your response/event is ready" wakeup.  Its only
 * effect is ending a hlt, so the handler only acknowledges it (EOI is a wrmsr
 * to the x2APIC EOI register) and returns.  It is kept to a handful of
 * instructions because ring-0 code is emulated on PVM (see abi.h).
 */
	.globl rt_irq_stub_vmrpc
	.type rt_irq_stub_vmrpc, @function
rt_irq_stub_vmrpc:
	pushq %rax
	pushq %rcx
	pushq %rdx
	movl $0x80b, %ecx
	xorl %eax, %eax
	xorl %edx, %edx
	wrmsr
	popq %rdx
	popq %rcx
	popq %rax
	iretq
	.size rt_irq_stub_vmrpc, . - rt_irq_stub_vmrpc

/* Spurious-interrupt vector: the APIC wants no EOI for it; just return. */
	.globl rt_irq_stub_spurious
	.type rt_irq_stub_spurious, @function
rt_irq_stub_spurious:
	iretq
	.size rt_irq_stub_spurious, . - rt_irq_stub_spurious

/*
 * #UD (vector 6): the runtime's ring-3 -> ring-0 call, "ud2; .byte op" (see
 * vmrpc/cpu.h).  Entered through an interrupt gate, so IF=0 here.
 *   op 1 (rt_halt_if_equal): rdi = address of a 32-bit word, esi = the value
 *        the caller saw; if the word still holds it, "sti; hlt" (atomic: sti's
 *        shadow) waits for the wakeup, whose handler runs on this same ring-0
 *        stack and returns here; iretq then restores the caller's IF=0.
 *   op 2 (rt_park): halt forever.
 * Any other #UD is a real one: the handler removes its own IDT gate and
 * returns, so the instruction faults again, finds no handler and escalates to
 * a triple fault, which the VMM reports with the registers of the culprit.
 * Kept short because ring-0 code is emulated on PVM.
 */
	.globl rt_ud_stub
	.type rt_ud_stub, @function
rt_ud_stub:
	pushq %rax
	movq 8(%rsp), %rax		/* faulting rip */
	cmpw $0x0b0f, (%rax)		/* ud2 */
	jne 3f
	cmpb $1, 2(%rax)
	jne 2f
	addq $3, 8(%rsp)		/* resume after "ud2; .byte 1" */
	popq %rax
	cmpl %esi, (%rdi)
	jne 1f
	sti
	hlt
1:	iretq
2:	cmpb $2, 2(%rax)
	jne 3f
4:	cli
	hlt
	jmp 4b
3:	movq rt_ud_gate_type(%rip), %rax
	movb $0, (%rax)			/* clear P in the #UD gate */
	popq %rax
	iretq
	.size rt_ud_stub, . - rt_ud_stub

	.section .note.GNU-stack, "", @progbits
