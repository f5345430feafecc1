/*
 * Guest entry point.  The VMM starts every vCPU here in 64-bit ring 3 with
 * rdi = &boot_info, rsi = vCPU index, rsp = 0 and interrupts off, so the first
 * job is a stack: each vCPU takes its own slot of rt_stacks by index.
 */
#include "layout.h"

	.section .text.entry, "ax", @progbits
	.globl _start
	.type _start, @function
_start:
	cld
	cmpq $RT_MAX_VCPUS, %rsi
	jae 1f				/* no stack for this vCPU: stay parked */
	leaq 1(%rsi), %rax
	shlq $RT_STACK_SHIFT, %rax
	leaq rt_stacks(%rax), %rsp	/* top of this vCPU's stack, 16-byte aligned */
	xorl %ebp, %ebp			/* terminates frame-pointer backtraces */
	/* rdi and rsi are already rt_start's (boot_info, cpu) arguments. */
	call rt_start
1:	pause				/* ring 3: no hlt before the runtime's gates exist */
	jmp 1b
	.size _start, . - _start

	.bss
	.balign 4096
	.globl rt_stacks
	.type rt_stacks, @object
rt_stacks:
	.skip RT_STACK_SIZE * RT_MAX_VCPUS
	.size rt_stacks, . - rt_stacks

	.section .note.GNU-stack, "", @progbits
