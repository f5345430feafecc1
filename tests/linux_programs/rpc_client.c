/*
 * A Linux program that uses VM RPC through the Linux SDK (vmrpc_linux.h):
 * tests/test_linux_rpc.py runs it with a "kv" host module and an event queue
 * "q".  Each line it prints is checked there; outside vmrpc it reports ENODEV.
 */
#include <stdio.h>
#include <string.h>

#include <vmrpc_linux.h>

static void call(int h, uint32_t fn, const char *req)
{
	char resp[64];
	long n = perform_rpc(h, fn, req, strlen(req), resp, sizeof(resp));

	if (n < 0)
		printf("rpc %s: %s\n", req, vmrpc_strerror((int)n));
	else
		printf("rpc %s: %.*s\n", req, (int)n, resp);
}

int main(void)
{
	struct vmrpc_evq q;
	char buf[64];
	long n;
	int h = bind_module("kv", VMRPC_VERSION(1, 0));

	if (h < 0) {
		printf("bind kv: %s\n", vmrpc_strerror(h));
		return 1;
	}
	call(h, 0, "k=hello");
	call(h, 1, "k");
	call(h, 9, "x");
	/* The personality's own modules and handles are not the program's. */
	printf("bind files: %s", vmrpc_strerror(bind_module("files", VMRPC_VERSION(1, 0))));
	printf(", linux_exec: %s\n",
	       vmrpc_strerror(bind_module("linux_exec", VMRPC_VERSION(1, 0))));
	printf("rpc on handle %d: %s\n", h + 1,
	       vmrpc_strerror((int)perform_rpc(h + 1, 0, "x", 1, buf, sizeof(buf))));
	printf("rpc into the personality: %s\n",
	       vmrpc_strerror((int)perform_rpc(h, 1, "k", 1, (void *)0x200000, 16)));

	if (evq_open("q", &q) || q.max_event_size != 32) {
		printf("evq_open q failed\n");
		return 1;
	}
	printf("evq_open nosuch: %s\n", vmrpc_strerror(evq_open("nosuch", &(struct vmrpc_evq){0})));
	for (int i = 1; i <= 3; i++) {
		int len = snprintf(buf, sizeof(buf), "event %d", i);

		if (put_event(&q, buf, (size_t)len)) {
			printf("put_event failed\n");
			return 1;
		}
	}
	n = get_event(&q, buf, sizeof(buf));
	printf("got: %.*s\n", n < 0 ? 0 : (int)n, buf);
	printf("try_get: %s\n", vmrpc_strerror((int)try_get_event(&q, buf, sizeof(buf))));
	n = unbind_module(h);
	printf("unbind: %ld, then rpc: %s\n", n,
	       vmrpc_strerror((int)perform_rpc(h, 1, "k", 1, buf, sizeof(buf))));
	return 0;
}
