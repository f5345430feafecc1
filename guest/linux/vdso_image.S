/*
 * The vDSO (vdso/) embedded in the personality: a page of clock parameters,
 * then the vDSO file as it is (vdso.ld makes file offsets addresses), so the
 * vDSO finds the parameters 4096 bytes before its own start.  In .text: the
 * program calls into it.  The personality writes the parameter page once,
 * before the program starts (its image is identity-mapped writable, see
 * crates/vmm/src/arch/paging.rs).
 */
	.section .text.vdso, "ax", @progbits
	.balign 4096
	.globl lx_clock
	.type lx_clock, @object
lx_clock:
	.skip 4096
	.size lx_clock, . - lx_clock
	.globl lx_vdso_image
lx_vdso_image:
	.incbin VDSO_FILE
	.globl lx_vdso_image_end
lx_vdso_image_end:

	.section .note.GNU-stack, "", @progbits
