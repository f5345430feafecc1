/*
 * Shows that a slow (async) host function does not stall other calls.
 * vCPU 1 calls slow.0, which the host holds until it is released.  Meanwhile
 * vCPU 0 polls fast.0 until the host says the slow call is in flight (answer
 * "1"), makes argv[1] (default 100) more fast calls, then calls fast.1, which
 * releases the slow call.  If the slow call held up the host, vCPU 0 would
 * never get its answers and the VM would time out.
 */
#include <vmrpc.h>

static volatile uint32_t slow_done;
static volatile long slow_rc;

void ap_main(unsigned cpu)
{
	char resp[16];
	int h;

	if (cpu != 1)
		return;
	h = bind_module("slow", VMRPC_VERSION(1, 0));
	slow_rc = h < 0 ? h : perform_rpc(h, 0, "wait", 4, resp, sizeof(resp));
	__atomic_store_n(&slow_done, 1, __ATOMIC_RELEASE);
}

int main(int argc, char **argv)
{
	long extra = argc > 1 ? strtol(argv[1], NULL, 0) : 100;
	char resp[16];
	long polls = 0, rc;
	int fast = bind_module("fast", VMRPC_VERSION(1, 0));

	if (rt_cpu_count() < 2 || fast < 0) {
		printf("rpc_async: needs 2 vcpus and the fast module (%d)\n", fast);
		return 2;
	}
	do {
		rc = perform_rpc(fast, 0, "poll", 4, resp, sizeof(resp));
		polls++;
	} while (rc == 1 && resp[0] == '0');
	if (rc != 1) {
		printf("rpc_async: poll failed: %s (%ld)\n", vmrpc_strerror((int)rc), rc);
		return 1;
	}
	for (long i = 0; i < extra; i++) {
		rc = perform_rpc(fast, 0, "poll", 4, resp, sizeof(resp));
		if (rc != 1) {
			printf("rpc_async: fast call %ld failed: %ld\n", i, rc);
			return 1;
		}
	}
	printf("fast calls done while slow pending=%u\n", !__atomic_load_n(&slow_done, __ATOMIC_ACQUIRE));
	rc = perform_rpc(fast, 1, "release", 7, resp, sizeof(resp));
	while (!__atomic_load_n(&slow_done, __ATOMIC_ACQUIRE))
		cpu_relax();
	printf("release rc=%ld slow rc=%ld polls=%ld\n", rc, slow_rc, polls);
	return slow_rc >= 0 ? 0 : 1;
}
