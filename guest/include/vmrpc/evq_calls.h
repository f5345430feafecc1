/*
 * The event-queue calls, one declaration for both kinds of guest: bare guests
 * (vmrpc/evq.h, whose struct vmrpc_evq holds the rings) and Linux programs
 * (vmrpc_linux.h, whose struct vmrpc_evq names a queue the personality holds).
 * Each of those headers defines its struct vmrpc_evq before including this.
 */
#ifndef VMRPC_EVQ_CALLS_H
#define VMRPC_EVQ_CALLS_H

#include <stddef.h>

struct vmrpc_evq;

/* Opens the host's queue `name`; returns 0 and fills *q, or a VMRPC_E* code. */
int evq_open(const char *name, struct vmrpc_evq *q);
/* Sends one event; waits while the queue is full.  Returns 0 or VMRPC_E*. */
int put_event(struct vmrpc_evq *q, const void *data, size_t len);
/* As put_event, but returns VMRPC_EFULL at once if the queue is full. */
int try_put_event(struct vmrpc_evq *q, const void *data, size_t len);
/*
 * Receives one event into buf (at most cap bytes); waits while the queue is
 * empty.  Returns the event's length or VMRPC_E*.
 */
long get_event(struct vmrpc_evq *q, void *buf, size_t cap);
/* As get_event, but returns VMRPC_EEMPTY at once if the queue is empty. */
long try_get_event(struct vmrpc_evq *q, void *buf, size_t cap);
/*
 * How long a blocked put/get polls before it halts and waits for the host's
 * interrupt, in microseconds (default 50; 0 halts at once).
 */
void evq_set_spin_us(unsigned us);

#endif /* VMRPC_EVQ_CALLS_H */
