/*
 * Echo correctness: argv[1] = module (default "echo"), argv[2] = calls
 * (default 1000), argv[3] = payload bytes (default 64).  Every call carries a
 * different pattern and the answer must match it byte for byte.
 */
#include <vmrpc.h>

static uint8_t pattern(unsigned long call, size_t i)
{
	return (uint8_t)(call * 131u + i * 7u + (i >> 8) + 1u);
}

int main(int argc, char **argv)
{
	const char *module = argc > 1 ? argv[1] : "echo";
	long calls = argc > 2 ? strtol(argv[2], NULL, 0) : 1000;
	long size = argc > 3 ? strtol(argv[3], NULL, 0) : 64;
	uint8_t *req, *resp;
	int h;

	if (calls < 0 || size < 0 || size > (long)VMRPC_MAX_PAYLOAD) {
		printf("rpc_echo: bad arguments\n");
		return 2;
	}
	h = bind_module(module, VMRPC_VERSION(1, 0));
	if (h < 0) {
		printf("rpc_echo: bind %s: %s (%d)\n", module, vmrpc_strerror(h), h);
		return 1;
	}
	req = malloc((size_t)size + 1);
	resp = malloc((size_t)size + 1);
	if (!req || !resp) {
		printf("rpc_echo: out of memory\n");
		return 1;
	}
	for (long c = 0; c < calls; c++) {
		long rc;

		for (long i = 0; i < size; i++)
			req[i] = pattern((unsigned long)c, (size_t)i);
		memset(resp, 0, (size_t)size);
		rc = perform_rpc(h, 0, req, (size_t)size, resp, (size_t)size);
		if (rc < 0) {
			printf("rpc_echo: call %ld: %s (%ld)\n", c, vmrpc_strerror((int)rc), rc);
			return 1;
		}
		if (rc != size) {
			printf("rpc_echo: call %ld: response length %ld, expected %ld\n", c, rc, size);
			return 1;
		}
		for (long i = 0; i < size; i++) {
			if (resp[i] != req[i]) {
				printf("rpc_echo: call %ld: mismatch at byte %ld: got 0x%02x expected 0x%02x\n",
				       c, i, resp[i], req[i]);
				return 1;
			}
		}
	}
	printf("rpc_echo ok calls=%ld size=%ld\n", calls, size);
	return 0;
}
