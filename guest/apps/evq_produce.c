/*
 * Event queue producer: puts argv[2] events of argv[3] bytes (>= 8) into the
 * queue argv[1]; argv[4], if given, sets how long a blocked put polls before
 * it halts (evq_set_spin_us; 0 exercises the sleep path on every wait).  Event k carries k (little-endian u64) in its first 8 bytes
 * and evq_pattern(k, i) in byte i >= 8; evq_consume and the host tests check
 * both.  Exit codes: 0 done, 1 a put failed, 2 bad arguments, 3 the queue was
 * deleted (VMRPC_ENOQUEUE).
 */
#include <vmrpc.h>

#include "evq_pattern.h"

int main(int argc, char **argv)
{
	struct vmrpc_evq q;
	long n, size;
	uint8_t *buf;
	int rc;

	if (argc < 4) {
		printf("usage: evq_produce QUEUE COUNT SIZE [SPIN_US]\n");
		return 2;
	}
	n = strtol(argv[2], NULL, 0);
	size = strtol(argv[3], NULL, 0);
	if (n < 0 || size < 8 || size > (long)VMRPC_EVQ_MAX_EVENT_SIZE + 8) {
		printf("evq_produce: bad arguments\n");
		return 2;
	}
	if (argc > 4)
		evq_set_spin_us((unsigned)strtoul(argv[4], NULL, 0));
	rc = evq_open(argv[1], &q);
	if (rc) {
		printf("evq_produce: open %s: %s (%d)\n", argv[1], vmrpc_strerror(rc), rc);
		return rc == VMRPC_ENOQUEUE ? 3 : 1;
	}
	buf = malloc((size_t)size);
	if (!buf) {
		printf("evq_produce: out of memory\n");
		return 1;
	}
	for (long k = 0; k < n; k++) {
		evq_fill(buf, (size_t)size, (uint64_t)k);
		rc = put_event(&q, buf, (size_t)size);
		if (rc) {
			printf("evq_produce: put %ld: %s (%d)\n", k, vmrpc_strerror(rc), rc);
			return rc == VMRPC_ENOQUEUE ? 3 : 1;
		}
	}
	printf("evq_produce ok n=%ld\n", n);
	return 0;
}
