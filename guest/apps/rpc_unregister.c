/*
 * unregister_hm while a call is in flight: binds "m", calls m.0 (the host holds
 * it while the test unregisters the module), then calls again through the same
 * handle and binds again.  Prints every return code for the test to check.
 */
#include <vmrpc.h>

int main(void)
{
	char resp[64];
	int h = bind_module("m", VMRPC_VERSION(1, 0));
	long first, second;
	int rebind;

	if (h < 0) {
		printf("bind failed: %s\n", vmrpc_strerror(h));
		return 1;
	}
	first = perform_rpc(h, 0, "in flight", 9, resp, sizeof(resp));
	second = perform_rpc(h, 0, "after", 5, resp, sizeof(resp));
	rebind = bind_module("m", VMRPC_VERSION(1, 0));
	printf("first=%ld second=%ld rebind=%d\n", first, second, rebind);
	return 0;
}
