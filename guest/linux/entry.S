/*
 * System-call entry.  On PVM, `syscall` from ring 3 jumps to MSR_LSTAR and
 * stays in ring 3 (FMASK not applied); the host's trampoline there jumps here
 * through %gs:LX_GS_HANDLER.  rcx = return address, r11 = rflags.
 *
 * Linux's contract: every register except rax (result), rcx and r11 survives.
 * We leave the program's stack untouched (its 128-byte red zone included) by
 * switching to this thread's own syscall stack (and mark the thread as in
 * the personality meanwhile: the host does not preempt it there), and return with jmp *%rcx
 * (sysretq raises #GP from ring 3).  The C handler is built without SSE, so
 * vector and x87 state need no saving.
 */
#include "linux_abi.h"

	.text
	.globl lx_syscall_entry
	.type lx_syscall_entry, @function
lx_syscall_entry:
	movq %rsp, %gs:LX_GS_USER_RSP
	movq %gs:LX_GS_STACK, %rsp
	movl $1, %gs:LX_GS_IN_PERSONALITY
	pushq %r15			/* struct lx_frame, from its last field: */
	pushq %r14			/* the callee-saved registers only for clone */
	pushq %r13			/* (a new thread starts with all of them) */
	pushq %r12
	pushq %rbp
	pushq %rbx
	pushq %gs:LX_GS_USER_RSP
	pushq %rcx
	pushq %r11
	pushq %rax
	pushq %r9
	pushq %r8
	pushq %r10
	pushq %rdx
	pushq %rsi
	pushq %rdi
	cld
	movq %rsp, %rdi			/* 16 words: the stack stays 16-byte aligned */
	call lx_syscall
	popq %rdi
	popq %rsi
	popq %rdx
	popq %r10
	popq %r8
	popq %r9
	addq $8, %rsp			/* nr: rax holds the result now */
	popq %r11
	popq %rcx
	pushq %r11
	popfq
	popq %rsp			/* the callee-saved words are left behind */
	movl $0, %gs:LX_GS_IN_PERSONALITY
	jmp *%rcx
	.size lx_syscall_entry, . - lx_syscall_entry

/*
 * Rewritten sites (`syscall` -> `call *%rax`, see crates/vmm/src/linux/
 * rewrite.rs) arrive here through the nop sled at address 0 and
 * %gs:LX_GS_ZPOLINE, with the return address on the program's stack.  Recreate
 * what `syscall` leaves (rcx = return address, r11 = rflags, rsp as before the
 * call) and share the path above.  The call's push wrote the 8 bytes below the
 * program's rsp, inside its red zone (zpoline's known cost; the compilers'
 * syscall wrappers keep nothing there); pushfq reuses that same slot.
 */
	.globl lx_zpoline_entry
	.type lx_zpoline_entry, @function
lx_zpoline_entry:
	popq %rcx
	pushfq
	popq %r11
	jmp lx_syscall_entry
	.size lx_zpoline_entry, . - lx_zpoline_entry

/* Enters the program: rsp at argc, rdx = 0 (no atexit function), rest clear. */
	.globl lx_enter_program
	.type lx_enter_program, @function
lx_enter_program:			/* (entry, sp) */
	movq %rsi, %rsp
	movq %rdi, %rcx
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %edi, %edi
	xorl %ebp, %ebp
	xorl %r8d, %r8d
	xorl %r9d, %r9d
	xorl %r10d, %r10d
	xorl %r11d, %r11d
	xorl %r12d, %r12d
	xorl %r13d, %r13d
	xorl %r14d, %r14d
	xorl %r15d, %r15d
	movl $0, %gs:LX_GS_IN_PERSONALITY
	jmp *%rcx
	.size lx_enter_program, . - lx_enter_program

/*
 * Starts a thread made by clone (thread.c): every register from `struct
 * lx_thread_regs` (a copy of the parent's frame with rax = 0 and the new
 * stack), as `syscall` would return to it: rcx = rip, r11 = rflags.
 */
	.globl lx_thread_enter
	.type lx_thread_enter, @function
lx_thread_enter:			/* (struct lx_thread_regs *) */
	movq %rdi, %rsp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %r10
	popq %r8
	popq %r9
	popq %rax
	popq %rbx
	popq %rbp
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	popq %r11
	pushq %r11
	popfq
	popq %rcx
	popq %rsp
	movl $0, %gs:LX_GS_IN_PERSONALITY
	jmp *%rcx
	.size lx_thread_enter, . - lx_thread_enter

	.section .note.GNU-stack, "", @progbits
