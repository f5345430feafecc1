/*
 * Binds a module the host registers only after the guest started: retries
 * bind_module("late", 1.0) while it answers VMRPC_ENOMODULE, then calls it.
 * Prints "waiting for late" after the first miss, so the host knows when to
 * register, and how many misses it saw.
 */
#include <vmrpc.h>

int main(void)
{
	char resp[32];
	long misses = 0, n;
	int h;

	while ((h = bind_module("late", VMRPC_VERSION(1, 0))) == VMRPC_ENOMODULE) {
		if (misses++ == 0)
			printf("waiting for late\n");
		for (int i = 0; i < 1000; i++)
			cpu_relax();
	}
	if (h < 0) {
		printf("bind failed: %s\n", vmrpc_strerror(h));
		return 1;
	}
	n = perform_rpc(h, 0, "hi", 2, resp, sizeof(resp) - 1);
	if (n < 0) {
		printf("call failed: %s\n", vmrpc_strerror((int)n));
		return 1;
	}
	resp[n] = '\0';
	printf("late says: %s (after %ld misses)\n", resp, misses);
	return 0;
}
