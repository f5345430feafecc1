/*
 * Every error path of the RPC protocol, one line each:
 *   case <name> rc=<value>
 * The host-side test checks the values.
 */
#include <vmrpc.h>

static void show(const char *name, long rc)
{
	printf("case %s rc=%ld\n", name, rc);
}

int main(void)
{
	static uint8_t big[VMRPC_MAX_PAYLOAD + 1];
	uint8_t small[10];
	int echo, raiser;

	show("bind_nosuch", bind_module("nosuch", VMRPC_VERSION(1, 0)));
	show("bind_bad_major", bind_module("echo", VMRPC_VERSION(2, 0)));

	echo = bind_module("echo", VMRPC_VERSION(1, 0));
	show("bind_echo", echo);
	show("bad_function", perform_rpc(echo, 99, "x", 1, small, sizeof(small)));
	show("too_big", perform_rpc(echo, 0, big, sizeof(big), NULL, 0));
	memset(big, 'e', 100);
	show("resp_too_small", perform_rpc(echo, 0, big, 100, small, sizeof(small)));
	show("forged_handle", perform_rpc(0x7777, 0, "x", 1, small, sizeof(small)));
	show("unbind", unbind_module(echo));
	show("after_unbind", perform_rpc(echo, 0, "x", 1, small, sizeof(small)));
	show("sys_bad_function", perform_rpc(VMRPC_SYS_HANDLE, 77, NULL, 0, small, sizeof(small)));

	raiser = bind_module("raiser", VMRPC_VERSION(1, 0));
	show("bind_raiser", raiser);
	show("raiser_call", perform_rpc(raiser, 0, "x", 1, small, sizeof(small)));
	return 0;
}
