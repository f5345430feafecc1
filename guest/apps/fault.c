/*
 * Writes far above RAM, where nothing is mapped: a page fault at
 * 0xdead0000000, which the runtime reports to the VMM (vmrpc.GuestCrashed
 * with exception "#PF", address and source line).  Nothing may be printed
 * after the write.
 */
#include <vmrpc.h>

int main(void)
{
	/* Canonical (bit 47 clear), so the CPU raises #PF with this address in cr2,
	 * not #GP as for a non-canonical address. */
	volatile uint64_t *p = (volatile uint64_t *)0x00000dead0000000ull;

	printf("touching unmapped memory\n");
	*p = 0xbad;
	/* Not reached if the VMM maps only RAM; exit quietly with a telling code. */
	exit(3);
}
