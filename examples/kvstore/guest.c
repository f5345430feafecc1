/*
 * kvstore guest: keeps its data in the host's "kvstore" module (host.py) and
 * reaches it through VM RPC.
 *
 * Protocol (one VM RPC function per operation, see host.py):
 *   0 put     request "key\0value"   answer ""
 *   1 get     request "key"          answer "\1value" if found, "\0" if not
 *   2 delete  request "key"          answer "\1" if it was there, "\0" if not
 *   3 keys    request "prefix"       answer the matching keys, '\n'-separated, sorted
 *
 * Usage: guest.elf [N]   counts N page views (default 5), then checks everything.
 * main's return value is the VM's exit code: 0 when every check passed.
 */
#include <vmrpc.h>

enum { KV_PUT = 0, KV_GET = 1, KV_DELETE = 2, KV_KEYS = 3 };

static int kv; /* the module handle from bind_module */

static void die(const char *what, long rc)
{
	printf("kvstore: %s failed: %s (%ld)\n", what, vmrpc_strerror((int)rc), rc);
	exit(1);
}

static void kv_put(const char *key, const char *value)
{
	char req[256];
	size_t klen = strlen(key), vlen = strlen(value);
	long rc;

	if (klen + 1 + vlen > sizeof(req))
		die("put (too long)", VMRPC_EINVAL);
	memcpy(req, key, klen);
	req[klen] = '\0';
	memcpy(req + klen + 1, value, vlen);
	rc = perform_rpc(kv, KV_PUT, req, klen + 1 + vlen, NULL, 0);
	if (rc < 0)
		die("put", rc);
}

/* Copies the value of `key` into buf as a C string; returns 1 if found, 0 if not. */
static int kv_get(const char *key, char *buf, size_t cap)
{
	char resp[256];
	long rc = perform_rpc(kv, KV_GET, key, strlen(key), resp, sizeof(resp));
	size_t len;

	if (rc < 1)
		die("get", rc < 0 ? rc : VMRPC_EINVAL);
	if (resp[0] == 0)
		return 0;
	len = (size_t)rc - 1 < cap - 1 ? (size_t)rc - 1 : cap - 1;
	memcpy(buf, resp + 1, len);
	buf[len] = '\0';
	return 1;
}

static int kv_delete(const char *key)
{
	char resp[1];
	long rc = perform_rpc(kv, KV_DELETE, key, strlen(key), resp, sizeof(resp));

	if (rc != 1)
		die("delete", rc < 0 ? rc : VMRPC_EINVAL);
	return resp[0];
}

static void kv_keys(const char *prefix, char *buf, size_t cap)
{
	long rc = perform_rpc(kv, KV_KEYS, prefix, strlen(prefix), buf, cap - 1);

	if (rc < 0)
		die("keys", rc);
	buf[rc] = '\0';
}

/* Increments the number stored at `key` (missing counts as 0); returns the new value. */
static long kv_incr(const char *key)
{
	char value[32];
	long n = kv_get(key, value, sizeof(value)) ? strtol(value, NULL, 10) : 0;

	snprintf(value, sizeof(value), "%ld", n + 1);
	kv_put(key, value);
	return n + 1;
}

static int failures;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok  " : "FAIL", what);
	failures += !ok;
}

int main(int argc, char **argv)
{
	long views = argc > 1 ? strtol(argv[1], NULL, 10) : 5;
	char value[64], keys[256];

	kv = bind_module("kvstore", VMRPC_VERSION(1, 0));
	if (kv < 0)
		die("bind kvstore", kv);

	kv_put("user:1", "ada");
	kv_put("user:2", "grace");
	kv_put("config:mode", "fast");
	check(kv_get("user:2", value, sizeof(value)) && strcmp(value, "grace") == 0,
	      "get user:2 -> grace");
	check(!kv_get("user:3", value, sizeof(value)), "get user:3 -> not found");

	for (long i = 0; i < views; i++)
		kv_incr("views:home");
	check(kv_get("views:home", value, sizeof(value)) && strtol(value, NULL, 10) == views,
	      "views:home counted");
	printf("views:home = %s\n", value);

	kv_keys("user:", keys, sizeof(keys));
	check(strcmp(keys, "user:1\nuser:2") == 0, "keys user: -> user:1, user:2");
	check(kv_delete("user:1") == 1, "delete user:1 -> was there");
	check(kv_delete("user:1") == 0, "delete user:1 again -> was not");
	kv_keys("user:", keys, sizeof(keys));
	check(strcmp(keys, "user:2") == 0, "keys user: -> user:2");

	unbind_module(kv);
	printf("kvstore guest done, %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
