/*
 * A hostile 2-vCPU guest for the socket policy: data sent on a socket whose
 * connect is still under way must never reach the peer.
 *
 * arg[1] host (numeric), arg[2] port, arg[3] rounds (default 50).
 *
 * vCPU 0 connects `rounds` times (socket, connect, close) with the ordinary
 * library calls.  The host policy is expected to force TLS or a SOCKS5 proxy
 * on that connection, so each connect involves a handshake.  Meanwhile vCPU 1
 * calls SEND and SEND_BUF directly on the host handles the connection can have
 * (the host hands out the lowest free handle, so 1 or 2), carrying the marker
 * RACE_PAYLOAD, without waiting for anything.  The host must refuse every one
 * of them until the connect, proxy and TLS handshakes have all finished.
 *
 * Prints "sock_race done rounds=N connects_ok=C spam=S accepted=A" where
 * accepted counts spam calls the host answered with bytes sent.  Both loops
 * are bounded: vCPU 1 stops when vCPU 0 is done.
 */
#include <vmrpc.h>
#include <vmrpc/socket_proto.h>

#define RACE_PAYLOAD "GUEST-PLAINTEXT-RACE"

static uint32_t done;
static uint32_t spinning;
static uint64_t spam_calls;
static uint64_t spam_accepted;
static char zero_copy_buf[] = RACE_PAYLOAD;

static void spam(int module, uint32_t handle)
{
	uint8_t req[sizeof(struct vmrpc_sock_wait_req) + sizeof(RACE_PAYLOAD) - 1];
	struct vmrpc_sock_wait_req w = { handle, 0, 0, 0 };
	struct vmrpc_sock_buf_req b = { handle, sizeof(RACE_PAYLOAD) - 1,
				   (uint64_t)(uintptr_t)zero_copy_buf };
	struct vmrpc_sock_resp r;

	memcpy(req, &w, sizeof(w));
	memcpy(req + sizeof(w), RACE_PAYLOAD, sizeof(RACE_PAYLOAD) - 1);
	if (perform_rpc(module, VMRPC_SOCK_FN_SEND, req, sizeof(req), &r, sizeof(r)) >= 0 &&
	    r.result > 0)
		spam_accepted++;
	if (perform_rpc(module, VMRPC_SOCK_FN_SEND_BUF, &b, sizeof(b), &r, sizeof(r)) >= 0 &&
	    r.result > 0)
		spam_accepted++;
	spam_calls += 2;
}

void ap_main(unsigned cpu)
{
	int module;

	if (cpu != 1)
		return;
	module = bind_module(VMRPC_SOCK_MODULE_NAME,
			     VMRPC_VERSION(VMRPC_SOCK_MODULE_MAJOR, VMRPC_SOCK_MODULE_MINOR));
	__atomic_store_n(&spinning, 1, __ATOMIC_RELEASE);
	if (module <= 0)
		return;
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		spam(module, 1);
		spam(module, 2);
	}
}

int main(int argc, char **argv)
{
	const char *host = argc > 1 ? argv[1] : "127.0.0.1";
	const char *port = argc > 2 ? argv[2] : "443";
	long rounds = argc > 3 ? strtol(argv[3], NULL, 0) : 50;
	struct addrinfo hints, *res;
	long ok = 0;
	int rc;

	if (rt_cpu_count() < 2 || rounds <= 0) {
		printf("sock_race: needs 2 vCPUs and rounds > 0\n");
		return 2;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		printf("sock_race: getaddrinfo failed: %s\n", gai_strerror(rc));
		return 2;
	}
	while (!__atomic_load_n(&spinning, __ATOMIC_ACQUIRE))
		cpu_relax();
	for (long i = 0; i < rounds; i++) {
		int fd = socket(res->ai_family, SOCK_STREAM, 0);

		if (fd < 0) {
			printf("sock_race: socket failed errno=%d\n", errno);
			return 2;
		}
		if (connect(fd, res->ai_addr, res->ai_addrlen) == 0)
			ok++;
		close(fd);
	}
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	freeaddrinfo(res);
	printf("sock_race done rounds=%ld connects_ok=%ld spam=%llu accepted=%llu\n", rounds, ok,
	       (unsigned long long)spam_calls, (unsigned long long)spam_accepted);
	return 0;
}
