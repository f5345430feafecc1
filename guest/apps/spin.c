/* Never exits: for testing that the VMM can stop a busy guest from outside. */
#include <vmrpc.h>

int main(void)
{
	printf("spinning\n");
	for (;;)
		cpu_relax();
}
