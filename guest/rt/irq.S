/*
 * Ring-0 entry stubs.  The guest runs in ring 3; interrupts and the runtime's
 * `int` gates switch to the vCPU's ring-0 stack (TSS.RSP0, set by the VMM).
 * An interrupt taken inside rt_halt_stub arrives already in ring 0, on the
 * current stack, which is why everything is built with -mno-red-zone.
 */

#include "layout.h"

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
 *   op 3 (rt_flush_tlb): reload CR3, so page-table entries the ring-3 guest
 *        changed (narrowed protections) take effect on this vCPU.
 * Any other #UD is a real one: it is reported like every other exception
 * (rt_exc_common).  Kept short because ring-0 code is emulated on PVM.
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
2:	cmpb $3, 2(%rax)
	jne 5f
	addq $3, 8(%rsp)		/* resume after "ud2; .byte 3" */
	movq %cr3, %rax
	movq %rax, %cr3
	popq %rax
	iretq
5:	cmpb $2, 2(%rax)
	jne 3f
4:	cli
	hlt
	jmp 4b
3:	popq %rax
	pushq $0			/* #UD has no error code */
	pushq $6
	jmp rt_exc_common
	.size rt_ud_stub, . - rt_ud_stub

/*
 * Exceptions (vectors 0..31 but #UD): a crash.  Each stub makes the stack
 * look the same (an error code, 0 where the CPU pushes none, then the vector)
 * and jumps to rt_exc_common, which adds cr2 and the general registers, so
 * that the stack holds a struct vmrpc_crash_frame (vmrpc/abi.h), and hands its
 * address to the VMM through VMRPC_MMIO_CRASH.  The VMM ends the VM there;
 * the loop after the write only guards against a VMM that does not.
 */
	.macro exc_stub vector, has_error
	.type rt_exc_stub_\vector, @function
rt_exc_stub_\vector:
	.if \has_error == 0
	pushq $0
	.endif
	pushq $\vector
	jmp rt_exc_common
	.size rt_exc_stub_\vector, . - rt_exc_stub_\vector
	.endm

	/* The CPU pushes an error code for #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX. */
	.irp v, 0,1,2,3,4,5,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	exc_stub \v, 0
	.endr
	.irp v, 8,10,11,12,13,14,17,21,29,30
	exc_stub \v, 1
	.endr

	.type rt_exc_common, @function
rt_exc_common:
	pushq %rax
	movq %cr2, %rax
	xchgq %rax, (%rsp)		/* cr2 in its slot, rax restored */
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
	movabsq $RT_MMIO_CRASH, %rax
	movq %rsp, (%rax)
1:	cli
	hlt
	jmp 1b
	.size rt_exc_common, . - rt_exc_common

/* The stubs' addresses by vector for rt_idt_init; 0 where there is none (#UD). */
	.section .rodata
	.balign 8
	.globl rt_exc_stubs
	.type rt_exc_stubs, @object
rt_exc_stubs:
	.irp v, 0,1,2,3,4,5
	.quad rt_exc_stub_\v
	.endr
	.quad 0
	.irp v, 7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad rt_exc_stub_\v
	.endr
	.size rt_exc_stubs, . - rt_exc_stubs

	.section .note.GNU-stack, "", @progbits
