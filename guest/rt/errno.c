/*
 * errno: one per context, so a call in one never clobbers another's.  %gs:8
 * holds its address (internal.h): a vCPU's, or in the Linux personality a
 * thread's, which stays with the thread when the host moves it to another vCPU.
 */
#include "internal.h"

static int boot_errno; /* before start.c has set %gs:8 */

int *__errno_location(void)
{
	int *at;

	__asm__ volatile("movq %%gs:8, %0" : "=r"(at));
	return at ? at : &boot_errno;
}
