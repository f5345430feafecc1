/*
 * Event queue consumer: gets argv[2] events from the queue argv[1] and checks
 * that they carry the sequence numbers 0..n-1 in order and the payload pattern
 * of evq_produce (events of any length >= 8); argv[3], if given, sets how long
 * a blocked get polls before it halts (evq_set_spin_us).  Prints "evq_consume ok n=N" or
 * the first mismatch.  Exit codes: 0 ok, 1 mismatch or error, 2 bad
 * arguments, 3 the queue was deleted (VMRPC_ENOQUEUE).
 */
#include <vmrpc.h>

#include "evq_pattern.h"

int main(int argc, char **argv)
{
	struct vmrpc_evq q;
	uint8_t *buf;
	long n;
	int rc;

	if (argc < 3) {
		printf("usage: evq_consume QUEUE COUNT [SPIN_US]\n");
		return 2;
	}
	n = strtol(argv[2], NULL, 0);
	if (n < 0) {
		printf("evq_consume: bad arguments\n");
		return 2;
	}
	if (argc > 3)
		evq_set_spin_us((unsigned)strtoul(argv[3], NULL, 0));
	rc = evq_open(argv[1], &q);
	if (rc) {
		printf("evq_consume: open %s: %s (%d)\n", argv[1], vmrpc_strerror(rc), rc);
		return rc == VMRPC_ENOQUEUE ? 3 : 1;
	}
	buf = malloc(q.max_event_size);
	if (!buf) {
		printf("evq_consume: out of memory\n");
		return 1;
	}
	printf("evq_consume ready\n");
	for (long k = 0; k < n; k++) {
		long len = get_event(&q, buf, q.max_event_size);
		long bad;

		if (len < 0) {
			printf("evq_consume: get %ld: %s (%ld)\n", k, vmrpc_strerror((int)len), len);
			return len == VMRPC_ENOQUEUE ? 3 : 1;
		}
		if (len < 8) {
			printf("evq_consume: event %ld: only %ld bytes\n", k, len);
			return 1;
		}
		bad = evq_verify(buf, (size_t)len, (uint64_t)k);
		if (bad >= 0) {
			uint64_t seq;

			memcpy(&seq, buf, 8);
			printf("evq_consume: event %ld: mismatch at byte %ld (sequence number %lu)\n",
			       k, bad, (unsigned long)seq);
			return 1;
		}
	}
	printf("evq_consume ok n=%ld\n", n);
	return 0;
}
