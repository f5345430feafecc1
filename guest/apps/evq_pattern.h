/* The payload the event queue test apps put and check (see evq_produce.c). */
#ifndef EVQ_PATTERN_H
#define EVQ_PATTERN_H

#include <vmrpc.h>

static inline uint8_t evq_pattern(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 31u + i);
}

static inline void evq_fill(uint8_t *buf, size_t size, uint64_t seq)
{
	memcpy(buf, &seq, 8);
	for (size_t i = 8; i < size; i++)
		buf[i] = evq_pattern(seq, i);
}

/* Index of the first wrong byte of event `seq`, or -1 if it is intact. */
static inline long evq_verify(const uint8_t *buf, size_t len, uint64_t seq)
{
	uint64_t got;

	if (len < 8)
		return 0;
	memcpy(&got, buf, 8);
	if (got != seq)
		return 0;
	for (size_t i = 8; i < len; i++)
		if (buf[i] != evq_pattern(seq, i))
			return (long)i;
	return -1;
}

#endif
