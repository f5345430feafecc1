/*
 * Writes far above RAM, where nothing is mapped.  With no exception handlers
 * this ends in a triple fault, which the VMM reports; nothing may be printed
 * after the write.
 */
#include <vmrpc.h>

int main(void)
{
	volatile uint64_t *p = (volatile uint64_t *)0x0000dead00000000ull;

	printf("touching unmapped memory\n");
	*p = 0xbad;
	/* Not reached if the VMM maps only RAM; exit quietly with a telling code. */
	exit(3);
}
