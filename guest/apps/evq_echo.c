/*
 * Event queue echo: gets events from the queue argv[1] and puts each back
 * unchanged, until it gets the event "quit".  With more queue names, vCPU i
 * serves argv[1 + i] at the same time (the VM needs that many vCPUs).
 * Prints "evq_echo ok n=N queue=NAME" (events echoed) per queue.  Exit codes:
 * 0 every queue got "quit", 1 error, 2 bad arguments, 3 a queue was deleted
 * (VMRPC_ENOQUEUE).
 */
#include <vmrpc.h>

static uint32_t done;
static int worst; /* the highest exit code of any vCPU */

static int echo(const char *name)
{
	struct vmrpc_evq q;
	uint8_t *buf;
	long echoed = 0;
	int rc;

	rc = evq_open(name, &q);
	if (rc) {
		printf("evq_echo: open %s: %s (%d)\n", name, vmrpc_strerror(rc), rc);
		return rc == VMRPC_ENOQUEUE ? 3 : 1;
	}
	buf = malloc(q.max_event_size);
	if (!buf) {
		printf("evq_echo: out of memory\n");
		return 1;
	}
	printf("evq_echo ready queue=%s\n", name);
	for (;;) {
		long len = get_event(&q, buf, q.max_event_size);

		if (len < 0) {
			printf("evq_echo: %s: get: %s (%ld)\n", name, vmrpc_strerror((int)len), len);
			return len == VMRPC_ENOQUEUE ? 3 : 1;
		}
		if (len == 4 && memcmp(buf, "quit", 4) == 0)
			break;
		rc = put_event(&q, buf, (size_t)len);
		if (rc) {
			printf("evq_echo: %s: put: %s (%d)\n", name, vmrpc_strerror(rc), rc);
			return rc == VMRPC_ENOQUEUE ? 3 : 1;
		}
		echoed++;
	}
	printf("evq_echo ok n=%ld queue=%s\n", echoed, name);
	return 0;
}

static void serve(unsigned cpu)
{
	int rc = 0;

	if ((int)cpu + 1 < rt_argc())
		rc = echo(rt_argv()[cpu + 1]);
	/* Keep the highest code; only the vCPUs that serve a queue can set one. */
	for (int seen = __atomic_load_n(&worst, __ATOMIC_RELAXED); rc > seen;)
		if (__atomic_compare_exchange_n(&worst, &seen, rc, 0, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			break;
	__atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
}

void ap_main(unsigned cpu)
{
	serve(cpu);
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc < 2 || (unsigned)argc - 1 > rt_cpu_count()) {
		printf("usage: evq_echo QUEUE [QUEUE...] (one vCPU per queue)\n");
		return 2;
	}
	serve(0);
	while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < rt_cpu_count())
		cpu_relax();
	return __atomic_load_n(&worst, __ATOMIC_RELAXED);
}
