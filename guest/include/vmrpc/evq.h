/*
 * Event queues, guest side (lib/evq.c).  The host creates a queue by name
 * (make_ev_queue); the guest opens it once through VM RPC and then moves
 * events through shared memory only: no exit, no interrupt while the other
 * side keeps up (see "Event queues" in vmrpc/abi.h).
 *
 * Every call returns a VMRPC_E* code (< 0) on failure:
 *   VMRPC_ENOQUEUE  no such queue, or it was deleted (every later call too)
 *   VMRPC_ETOOBIG   put of an event larger than the queue's max_event_size
 *   VMRPC_EFULL     try_put_event on a full queue
 *   VMRPC_EEMPTY    try_get_event on an empty queue
 *   VMRPC_ERANGE    get of an event larger than `cap`; the event stays queued
 *   VMRPC_EINVAL    bad arguments, or the host handed out an inconsistent queue
 *
 * A queue carries events both ways: put_event sends to the host (g2h ring),
 * get_event receives from the host (h2g ring).  Each ring has one producer and
 * one consumer: at any time at most one vCPU may put and one vCPU may get on
 * the same queue (they may be different vCPUs); serialise more yourself.
 */
#ifndef VMRPC_EVQ_H
#define VMRPC_EVQ_H

#include <stddef.h>
#include <stdint.h>

#include <vmrpc/abi.h>

struct vmrpc_evq {
	uint32_t id;             /* queue_id: the value written to the doorbell */
	uint32_t entries;        /* slots per ring, a power of two */
	uint32_t max_event_size; /* payload bytes per event */
	uint32_t slot_size;
	struct vmrpc_ring *g2h;  /* we produce */
	struct vmrpc_ring *h2g;  /* we consume */
	uint32_t g2h_head;       /* our copy of the index we own */
	uint32_t h2g_tail;
	uint32_t g2h_tail_seen;  /* the host's index as last read */
	uint32_t h2g_head_seen;
	/* The host's index when we last rang its doorbell for each ring (valid
	 * if *_kicked): no second ring while it has not moved (see lib/evq.c). */
	uint32_t g2h_kick_at;
	uint32_t h2g_kick_at;
	uint8_t g2h_kicked;
	uint8_t h2g_kicked;
};

#include <vmrpc/evq_calls.h>

#endif /* VMRPC_EVQ_H */
