/*
 * Event queue throughput, guest side of benches/events.py:
 *   evqbench produce QUEUE COUNT SIZE   put COUNT events of SIZE bytes (>= 8,
 *                                       sequence-numbered as evq_produce's)
 *   evqbench consume QUEUE COUNT        get COUNT events, checking only their
 *                                       sequence numbers
 *   evqbench corrupt QUEUE              play a hostile guest: publish an event
 *                                       with an impossible length, then a head
 *                                       no producer could write (for tests)
 * Prints "EVQBENCH mode=<mode> n=<n> size=<bytes> ns=<guest time>" (ns is TSC
 * cycles, and the line ends in " unit=cycles", if the TSC rate is unknown).
 * Exit codes as evq_produce's.
 */
#include <vmrpc.h>

static void report(const char *mode, long n, long size, uint64_t cycles)
{
	uint64_t ns = rt_ns_from_tsc(cycles);

	if (ns || !cycles)
		printf("EVQBENCH mode=%s n=%ld size=%ld ns=%lu\n", mode, n, size, (unsigned long)ns);
	else
		printf("EVQBENCH mode=%s n=%ld size=%ld ns=%lu unit=cycles\n", mode, n, size,
		       (unsigned long)cycles);
}

static int produce(struct vmrpc_evq *q, long n, long size)
{
	uint8_t *buf = calloc(1, (size_t)size);
	uint64_t t0;

	if (!buf)
		return 1;
	t0 = rdtsc();
	for (long k = 0; k < n; k++) {
		int rc;

		memcpy(buf, &k, 8);
		rc = put_event(q, buf, (size_t)size);
		if (rc) {
			printf("evqbench: put %ld: %s (%d)\n", k, vmrpc_strerror(rc), rc);
			return rc == VMRPC_ENOQUEUE ? 3 : 1;
		}
	}
	report("produce", n, size, rdtsc() - t0);
	return 0;
}

static int consume(struct vmrpc_evq *q, long n)
{
	uint8_t *buf = malloc(q->max_event_size);
	uint64_t t0 = 0;
	long size = 0;

	if (!buf)
		return 1;
	for (long k = 0; k < n; k++) {
		long len = get_event(q, buf, q->max_event_size);
		uint64_t seq;

		if (len < 0) {
			printf("evqbench: get %ld: %s (%ld)\n", k, vmrpc_strerror((int)len), len);
			return len == VMRPC_ENOQUEUE ? 3 : 1;
		}
		/* The clock starts at the first event: the host's start-up is not ours. */
		if (k == 0)
			t0 = rdtsc();
		memcpy(&seq, buf, 8);
		if (len < 8 || seq != (uint64_t)k) {
			printf("evqbench: event %ld: wrong sequence number\n", k);
			return 1;
		}
		size = len;
	}
	report("consume", n, size, rdtsc() - t0);
	return 0;
}

/* Waits for the host to say "next" (an h2g event) between the two steps. */
static int corrupt(struct vmrpc_evq *q)
{
	struct vmrpc_ev_slot *slot;
	char buf[8];

	slot = (struct vmrpc_ev_slot *)((uint8_t *)(q->g2h + 1) +
					(size_t)(q->g2h_head & (q->entries - 1)) * q->slot_size);
	slot->len = q->max_event_size + 1;
	__atomic_store_n(&q->g2h->head, q->g2h_head + 1, __ATOMIC_RELEASE);
	printf("evqbench corrupt: bad length\n");
	if (get_event(q, buf, sizeof(buf)) < 0)
		return 1;
	__atomic_store_n(&q->g2h->head, q->g2h_head + q->entries + 7, __ATOMIC_RELEASE);
	printf("evqbench corrupt: bad head\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct vmrpc_evq q;
	long n = 0;
	int rc;

	if (argc < 3 || (strcmp(argv[1], "produce") && strcmp(argv[1], "consume") &&
			 strcmp(argv[1], "corrupt"))) {
		printf("usage: evqbench produce QUEUE COUNT SIZE | consume QUEUE COUNT |"
		       " corrupt QUEUE\n");
		return 2;
	}
	if (strcmp(argv[1], "corrupt")) {
		n = argc > 3 ? strtol(argv[3], NULL, 0) : 0;
		if (n <= 0) {
			printf("evqbench: bad count\n");
			return 2;
		}
	}
	rc = evq_open(argv[2], &q);
	if (rc) {
		printf("evqbench: open %s: %s (%d)\n", argv[2], vmrpc_strerror(rc), rc);
		return rc == VMRPC_ENOQUEUE ? 3 : 1;
	}
	if (!strcmp(argv[1], "corrupt"))
		return corrupt(&q);
	printf("evqbench ready\n");
	if (!strcmp(argv[1], "consume"))
		return consume(&q, n);
	if (argc < 5 || strtol(argv[4], NULL, 0) < 8) {
		printf("evqbench: produce needs SIZE >= 8\n");
		return 2;
	}
	return produce(&q, n, strtol(argv[4], NULL, 0));
}
