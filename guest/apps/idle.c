/* An idle guest: prints one line, then halts its vCPU for good (no CPU use). */
#include <vmrpc.h>

int main(void)
{
	printf("idle\n");
	rt_park();
}
