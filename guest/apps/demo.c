/*
 * The `make demo` guest: talks to the host's Python "kv" module and the native
 * "echo" module over VM RPC.
 */
#include <vmrpc.h>

static int fail(const char *what, long rc)
{
	printf("%s failed: %s (%ld)\n", what, vmrpc_strerror((int)rc), rc);
	return 1;
}

/* kv function 0: "key=value" -> "ok". */
static int kv_put(int kv, const char *key, const char *value)
{
	char req[128], resp[128];
	int len = snprintf(req, sizeof(req), "%s=%s", key, value);
	long rc = perform_rpc(kv, 0, req, (size_t)len, resp, sizeof(resp) - 1);

	if (rc < 0)
		return fail("kv.put", rc);
	resp[rc < (long)sizeof(resp) - 1 ? rc : (long)sizeof(resp) - 1] = '\0';
	printf("kv.put(%s) -> %s\n", req, resp);
	return 0;
}

/* kv function 1: key -> value. */
static int kv_get(int kv, const char *key)
{
	char resp[128];
	long rc = perform_rpc(kv, 1, key, strlen(key), resp, sizeof(resp) - 1);

	if (rc < 0)
		return fail("kv.get", rc);
	resp[rc < (long)sizeof(resp) - 1 ? rc : (long)sizeof(resp) - 1] = '\0';
	printf("kv.get(%s) -> %s\n", key, resp);
	return 0;
}

int main(void)
{
	const char *msg = "hello over vm rpc";
	char resp[64];
	int kv, echo;
	long rc;

	kv = bind_module("kv", VMRPC_VERSION(1, 0));
	if (kv < 0)
		return fail("bind kv", kv);
	printf("bound kv v1 -> handle %d\n", kv);
	if (kv_put(kv, "color", "blue") || kv_put(kv, "shape", "circle") ||
	    kv_get(kv, "color") || kv_get(kv, "shape"))
		return 1;

	echo = bind_module("echo", VMRPC_VERSION(1, 0));
	if (echo < 0)
		return fail("bind echo", echo);
	printf("bound echo v1 -> handle %d\n", echo);
	rc = perform_rpc(echo, 0, msg, strlen(msg), resp, sizeof(resp) - 1);
	if (rc < 0)
		return fail("echo", rc);
	resp[rc < (long)sizeof(resp) - 1 ? rc : (long)sizeof(resp) - 1] = '\0';
	printf("echo(%s) -> %s\n", msg, resp);
	printf("demo done\n");
	return 0;
}
