/*
 * Concurrent RPC from every vCPU: each binds "echo" v1 and makes argv[1]
 * (default 500) calls whose payload encodes (cpu, seq), verifying every answer.
 */
#include <vmrpc.h>

#define MAX_LEN 64

static uint32_t done, failed;

static void fill(uint8_t *buf, size_t len, unsigned cpu, uint32_t seq)
{
	uint32_t words[2] = { cpu, seq };

	memcpy(buf, words, sizeof(words));
	for (size_t i = sizeof(words); i < len; i++)
		buf[i] = (uint8_t)(cpu * 37u + seq * 11u + i);
}

/* Returns 1 on success; prints the outcome either way. */
static int run(unsigned cpu)
{
	long calls = rt_argc() > 1 ? strtol(rt_argv()[1], NULL, 0) : 500;
	uint8_t req[MAX_LEN], resp[MAX_LEN];
	int h = bind_module("echo", VMRPC_VERSION(1, 0));

	if (h < 0) {
		printf("cpu %u FAIL bind: %s (%d)\n", cpu, vmrpc_strerror(h), h);
		return 0;
	}
	for (long seq = 0; seq < calls; seq++) {
		/* Vary the length too, from 8 to MAX_LEN bytes. */
		size_t len = 8 + (size_t)(seq % (MAX_LEN - 7));
		long rc;

		fill(req, len, cpu, (uint32_t)seq);
		rc = perform_rpc(h, 0, req, len, resp, sizeof(resp));
		if (rc < 0) {
			printf("cpu %u FAIL seq %ld: %s (%ld)\n", cpu, seq, vmrpc_strerror((int)rc), rc);
			return 0;
		}
		if ((size_t)rc != len || memcmp(req, resp, len)) {
			uint32_t got[2];

			memcpy(got, resp, sizeof(got));
			printf("cpu %u FAIL seq %ld: bad answer len %ld (want %zu) cpu=%u seq=%u\n", cpu,
			       seq, rc, len, got[0], got[1]);
			return 0;
		}
	}
	printf("cpu %u ok\n", cpu);
	return 1;
}

static void report(int ok)
{
	if (!ok)
		__atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
}

void ap_main(unsigned cpu)
{
	report(run(cpu));
}

int main(void)
{
	unsigned n = rt_cpu_count();

	report(run(0));
	while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < n)
		cpu_relax();
	if (failed) {
		printf("rpc_smp: %u of %u vcpus failed\n", failed, n);
		return 1;
	}
	printf("rpc_smp ok vcpus=%u\n", n);
	return 0;
}
