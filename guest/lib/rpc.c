/*
 * VM RPC client: synchronous calls over the calling thread's channel (see the
 * protocol description in vmrpc/abi.h).  Each thread owns its channel
 * (rpc_channel_index), so no locking is needed; the state below is indexed by
 * channel and touched only by its owner.  A bare guest has one thread per
 * vCPU; a Linux program's thread keeps its channel, and its call in flight,
 * while its vCPU runs another thread.
 */
#include <vmrpc.h>

#define CHAN_BYTES(max_payload) ((uint64_t)VMRPC_CHAN_DATA_OFFSET + 2u * (uint64_t)(max_payload))

struct rpc_chan {
	int state; /* 0: not looked up yet, 1: usable, VMRPC_ENODEV: unusable */
	uint32_t ring_entries;
	uint32_t max_payload;
	uint32_t req_head;  /* our copy of the request ring head (we produce) */
	uint32_t resp_tail; /* our copy of the response ring tail (we consume) */
	uint64_t next_tag;
	volatile struct vmrpc_shared_hdr *hdr;
	struct vmrpc_ring *req;
	struct vmrpc_ring *resp;
	volatile struct vmrpc_req_desc *req_slots;
	volatile struct vmrpc_resp_desc *resp_slots;
	uint8_t *data;
} __attribute__((aligned(64)));

static struct rpc_chan rpc_chans[VMRPC_MAX_CHANNELS];
static unsigned spin_us = 200;
static int wait_in_host;

void vmrpc_set_spin_us(unsigned us)
{
	spin_us = us;
}

void vmrpc_set_wait_in_host(int on)
{
	wait_in_host = on;
}

/*
 * The channel the calling thread uses: the one place that decides it (a VM
 * with several processes would add the process's first channel here; the
 * host's counterpart is rpc::wait::thread_channel).
 */
static unsigned rpc_channel_index(void)
{
	return rt_thread_id();
}

/*
 * Validates the shared region once per channel.  The numbers are copied out of
 * shared memory here and never re-read: anything the guest relies on for
 * bounds must not change under it later.
 */
static int rpc_setup(struct rpc_chan *rc, unsigned index)
{
	const struct vmrpc_boot_info *bi = rt_boot_info();
	volatile struct vmrpc_shared_hdr *hdr;
	uint64_t base, size, chan_off, stride, chan_bytes, chan;
	uint32_t vcpus, chans, entries, max_payload;

	if (!bi || !bi->shared_base || bi->shared_size < sizeof(struct vmrpc_shared_hdr))
		return VMRPC_ENODEV;
	base = bi->shared_base;
	size = bi->shared_size;
	if (base + size < base)
		return VMRPC_ENODEV;

	hdr = (volatile struct vmrpc_shared_hdr *)(uintptr_t)base;
	if (hdr->magic != VMRPC_SHARED_MAGIC || hdr->abi_version != VMRPC_ABI_VERSION)
		return VMRPC_ENODEV;
	vcpus = hdr->vcpu_count;
	chans = hdr->chan_count;
	entries = hdr->ring_entries;
	max_payload = hdr->max_payload;
	chan_off = hdr->chan_offset;
	stride = hdr->chan_stride;

	/* The ring and data layouts are fixed by the ABI; reject anything that
	 * would not fit them. */
	if (chans == 0)
		chans = vcpus; /* a host from before per-thread channels */
	if (index >= chans || chans > VMRPC_MAX_CHANNELS)
		return VMRPC_ENODEV;
	if (entries == 0 || entries > VMRPC_RPC_RING_ENTRIES)
		return VMRPC_ENODEV;
	if (max_payload < 4 || max_payload > VMRPC_MAX_PAYLOAD)
		return VMRPC_ENODEV;
	chan_bytes = CHAN_BYTES(max_payload);
	if (chan_off < sizeof(struct vmrpc_shared_hdr) || chan_off > size)
		return VMRPC_ENODEV;
	if (stride < chan_bytes || stride > size)
		return VMRPC_ENODEV;
	/* All chan_count channels inside the region (bounded: chans <= 64 and
	 * stride <= size, so no overflow). */
	if ((size - chan_off) / stride < chans)
		return VMRPC_ENODEV;
	chan = base + chan_off + (uint64_t)index * stride;

	rc->hdr = hdr;
	rc->ring_entries = entries;
	rc->max_payload = max_payload;
	rc->req = (struct vmrpc_ring *)(uintptr_t)(chan + VMRPC_CHAN_REQ_RING_OFFSET);
	rc->resp = (struct vmrpc_ring *)(uintptr_t)(chan + VMRPC_CHAN_RESP_RING_OFFSET);
	rc->req_slots = (volatile struct vmrpc_req_desc *)(rc->req + 1);
	rc->resp_slots = (volatile struct vmrpc_resp_desc *)(rc->resp + 1);
	rc->data = (uint8_t *)(uintptr_t)(chan + VMRPC_CHAN_DATA_OFFSET);
	/* Start from wherever the host initialised the counters (normally 0). */
	rc->req_head = __atomic_load_n(&rc->req->head, __ATOMIC_ACQUIRE);
	rc->resp_tail = __atomic_load_n(&rc->resp->tail, __ATOMIC_ACQUIRE);
	rc->next_tag = 1;
	/* Before this channel's first request: the engine polls only channels
	 * below chans_in_use (and the vCPUs'), so raise it to cover this one. */
	for (uint32_t seen = __atomic_load_n(&hdr->chans_in_use, __ATOMIC_RELAXED); seen < index + 1;)
		if (__atomic_compare_exchange_n(&hdr->chans_in_use, &seen, index + 1, 0,
						__ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
			break;
	return 1;
}

static struct rpc_chan *rpc_this_thread(int *err)
{
	unsigned index = rpc_channel_index();
	struct rpc_chan *rc;

	if (index >= VMRPC_MAX_CHANNELS) {
		*err = VMRPC_ENODEV;
		return NULL;
	}
	rc = &rpc_chans[index];
	if (rc->state == 0)
		rc->state = rpc_setup(rc, index);
	if (rc->state != 1) {
		*err = rc->state;
		return NULL;
	}
	return rc;
}

long vmrpc_max_payload(void)
{
	int err;
	struct rpc_chan *rc = rpc_this_thread(&err);

	return rc ? (long)rc->max_payload : err;
}

static int resp_ready(struct rpc_chan *rc)
{
	return __atomic_load_n(&rc->resp->head, __ATOMIC_ACQUIRE) != rc->resp_tail;
}

/*
 * Sleeps in the host until the response head moves (one exit at
 * VMRPC_MMIO_RPC_WAIT; the host compares the head under the lock its answer
 * takes, so none is missed).  The vCPU runs other threads meanwhile, and this
 * thread may come back on another vCPU: nothing here is per vCPU.
 */
static long wait_in_host_for(struct rpc_chan *rc, unsigned index)
{
	struct vmrpc_rpc_wait w;

	while (!resp_ready(rc)) {
		w.channel = index;
		w.seen_head = rc->resp_tail;
		w.result = VMRPC_ENODEV; /* what stays if no host device answers */
		mmio_write64(VMRPC_MMIO_RPC_WAIT, (uint64_t)(uintptr_t)&w);
		if (w.result < 0)
			return w.result; /* the VM stops, or no such device or channel */
	}
	return 0;
}

/*
 * Waits until the response ring is non-empty: poll briefly (a fast host
 * answers within microseconds and a hlt round trip costs more), then sleep,
 * in the host (wait_in_host_for) or in the halt gate.  The halt gate follows
 * the Dekker pattern: announce consumer_waiting, full
 * barrier, re-check, and halt only if head is still what we saw (checked again
 * in ring 0 with interrupts off, see rt_halt_if_equal).  If the host publishes
 * after that check it sees the flag and sends the interrupt, which stays
 * pending until the halt gate's sti and ends its hlt.
 */
static long wait_response(struct rpc_chan *rc, unsigned index)
{
	uint64_t khz = rt_tsc_khz();

	if (resp_ready(rc))
		return 0;
	if (spin_us) {
		if (khz) {
			uint64_t deadline = rdtsc() + khz * spin_us / 1000u;

			do {
				cpu_relax();
				if (resp_ready(rc))
					return 0;
			} while (rdtsc() < deadline);
		} else {
			/* Unknown TSC rate: pause takes roughly 10-150 cycles. */
			for (uint64_t i = 0; i < 200u * spin_us; i++) {
				cpu_relax();
				if (resp_ready(rc))
					return 0;
			}
		}
	}

	if (wait_in_host)
		return wait_in_host_for(rc, index);
	/* The halt gate: only a channel whose index is its vCPU's has that
	 * vCPU's interrupt (bare guests: one thread per vCPU). */
	rc->resp->consumer_vcpu = rt_cpu_id();
	__atomic_store_n(&rc->resp->consumer_waiting, 1, __ATOMIC_RELAXED);
	rt_mb();
	for (;;) {
		uint32_t head = __atomic_load_n(&rc->resp->head, __ATOMIC_ACQUIRE);

		if (head != rc->resp_tail)
			break;
		/* Halts only if head is still unchanged, checked in ring 0. */
		rt_halt_if_equal(&rc->resp->head, head);
	}
	__atomic_store_n(&rc->resp->consumer_waiting, 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Issues one call whose request bytes are already at offset 0 of the data
 * area, and waits for its answer.
 */
static long do_call(struct rpc_chan *rc, unsigned index, uint32_t handle, uint32_t function,
		    size_t req_len, void *resp, size_t resp_cap)
{
	volatile struct vmrpc_req_desc *d;
	uint64_t tag;

	/* Only one call is ever in flight per thread, so the ring cannot be full
	 * (an abandoned one's late answer is dropped as stale below). */
	tag = rc->next_tag++;
	d = &rc->req_slots[rc->req_head % rc->ring_entries];
	d->tag = tag;
	d->handle = handle;
	d->function = function;
	d->req_off = 0;
	d->req_len = (uint32_t)req_len;
	d->resp_off = rc->max_payload;
	d->resp_cap = (uint32_t)resp_cap;
	rc->req_head++;
	/* Release: the descriptor and the request bytes are visible before head. */
	__atomic_store_n(&rc->req->head, rc->req_head, __ATOMIC_RELEASE);
	rt_mb();
	if (rc->hdr->host_sleeping)
		mmio_write32(VMRPC_MMIO_DOORBELL, index);

	for (;;) {
		volatile struct vmrpc_resp_desc *r;
		uint64_t rtag;
		int32_t status;
		long w = wait_response(rc, index);

		if (w < 0)
			return w;
		/* resp_ready() did the acquire load of head, so the slot is valid. */
		r = &rc->resp_slots[rc->resp_tail % rc->ring_entries];
		rtag = r->tag;
		status = r->status;
		if (status > 0) {
			/* Copy while the slot is still ours (before tail moves). */
			size_t n = (size_t)status < resp_cap ? (size_t)status : resp_cap;

			if (rtag == tag && n)
				memcpy(resp, rc->data + rc->max_payload, n);
		}
		rc->resp_tail++;
		__atomic_store_n(&rc->resp->tail, rc->resp_tail, __ATOMIC_RELEASE);
		if (rtag == tag)
			return status;
		/* A stale answer (an older tag) is dropped; one from the future
		 * means the host lost track of this channel. */
		if (rtag > tag)
			return VMRPC_EINVAL;
	}
}

long perform_rpc(int handle, uint32_t function, const void *req, size_t req_len, void *resp,
		 size_t resp_cap)
{
	struct rpc_chan *rc;
	int err;

	rc = rpc_this_thread(&err);
	if (!rc)
		return err;
	if (req_len > rc->max_payload)
		return VMRPC_ETOOBIG;
	if ((req_len && !req) || (resp_cap && !resp))
		return VMRPC_EINVAL;
	if (resp_cap > rc->max_payload)
		resp_cap = rc->max_payload;
	if (req_len)
		memcpy(rc->data, req, req_len);
	return do_call(rc, rpc_channel_index(), (uint32_t)handle, function, req_len, resp,
		       resp_cap);
}

int bind_module(const char *name, uint32_t version)
{
	struct rpc_chan *rc;
	uint32_t handle = 0;
	size_t len;
	long n;
	int err;

	rc = rpc_this_thread(&err);
	if (!rc)
		return err;
	if (!name || !*name)
		return VMRPC_EINVAL;
	len = strlen(name);
	if (len > rc->max_payload - 4u)
		return VMRPC_ETOOBIG;
	/* Build the request in place: u32 version (little-endian, as x86 is),
	 * then the name without its NUL. */
	memcpy(rc->data, &version, 4);
	memcpy(rc->data + 4, name, len);
	n = do_call(rc, rpc_channel_index(), VMRPC_SYS_HANDLE, VMRPC_SYS_BIND, len + 4, &handle,
		    sizeof(handle));
	if (n < 0)
		return (int)n;
	if (n != sizeof(handle) || handle == 0 || handle > 0x7fffffffu)
		return VMRPC_EINVAL;
	return (int)handle;
}

int unbind_module(int handle)
{
	uint32_t h = (uint32_t)handle;
	long rc = perform_rpc(VMRPC_SYS_HANDLE, VMRPC_SYS_UNBIND, &h, sizeof(h), NULL, 0);

	return rc < 0 ? (int)rc : 0;
}
