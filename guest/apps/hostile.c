/*
 * A hostile guest for host robustness tests.  argv[1] = iterations (default
 * 100000), argv[2] = PRNG seed (default 1).  It scribbles random and
 * adversarial values over its own RPC channel (ring heads/tails, descriptors
 * with wild handles, offsets and lengths), now and then over the shared header,
 * other vCPUs' channels and RAM just past the shared region, and rings the
 * doorbell every iteration.  It never waits for an answer.  The host must stay
 * up and keep serving other guests; this guest prints "hostile done".
 *
 * Writes past the shared region skip the pages this guest itself depends on
 * (page tables, GDT/TSS, boot info and argv, the image) so that the guest
 * survives to report.
 */
#include <vmrpc.h>

struct range {
	uint64_t lo, hi;
};

static struct range protected_ranges[64];
static unsigned nprotected;
static int protect_overflow;
static uint64_t rng;

static void protect(uint64_t lo, uint64_t len)
{
	if (nprotected == RT_ARRAY_SIZE(protected_ranges)) {
		protect_overflow = 1;
		return;
	}
	protected_ranges[nprotected].lo = lo & ~0xfffull;
	protected_ranges[nprotected].hi = (lo + len + 0xfffull) & ~0xfffull;
	nprotected++;
}

static int is_protected(uint64_t a, uint64_t len)
{
	for (unsigned i = 0; i < nprotected; i++)
		if (a < protected_ranges[i].hi && a + len > protected_ranges[i].lo)
			return 1;
	return protect_overflow;
}

/*
 * Everything below the image is the VMM's boot structures (GDT, IDT, TSS, page
 * tables, per-CPU pages, ring-0 stacks; see the boot protocol in abi.h).
 * Corrupting them would only crash this guest, which proves nothing about the
 * host, so the random writes avoid them.
 */
static void protect_boot_structures(void)
{
	protect(0, VMRPC_IMAGE_BASE);
}

static void protect_boot_data(const struct vmrpc_boot_info *bi, char **argv, int argc)
{
	extern char __image_start[], _end[];

	protect((uintptr_t)bi, sizeof(*bi));
	protect((uintptr_t)argv, ((uint64_t)argc + 1) * sizeof(char *));
	for (int i = 0; i < argc; i++)
		protect((uintptr_t)argv[i], strlen(argv[i]) + 1);
	protect((uintptr_t)__image_start, (uint64_t)(_end - __image_start));
}

/* Adversarial 32-bit values: boundaries, overflow bait, or plain noise. */
static uint32_t nasty32(uint32_t max_payload)
{
	static const uint32_t special[] = {
		0,          1,          4,          8,          15,         16,
		4095,       4096,       0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe,
		0xfffff000, 0x10000,    0x0ffff,    0x20000,    0x20001,    0x1ffff,
	};
	uint64_t r = rt_rand64(&rng);

	switch (r % 5) {
	case 0:
		return special[(r >> 8) % RT_ARRAY_SIZE(special)];
	case 1: /* around the payload limit */
		return max_payload + (uint32_t)((r >> 8) % 5) - 2;
	case 2: /* sums that wrap: big offset + length just past the wrap point */
		return 0u - (uint32_t)((r >> 8) % 64);
	case 3:
		return (uint32_t)((r >> 8) % (2 * max_payload + 64));
	default:
		return (uint32_t)(r >> 16);
	}
}

static uint32_t pick_handle(void)
{
	uint64_t r = rt_rand64(&rng);

	switch (r % 4) {
	case 0: return 0; /* the system module */
	case 1: return (uint32_t)((r >> 8) % 8);
	case 2: return 0xffffffffu;
	default: return (uint32_t)(r >> 32);
	}
}

static void random_desc(volatile struct vmrpc_req_desc *d, uint32_t max_payload)
{
	uint64_t r = rt_rand64(&rng);

	d->tag = rt_rand64(&rng);
	d->handle = pick_handle();
	d->function = (r & 1) ? (uint32_t)((r >> 1) % 4) : (uint32_t)(r >> 32);
	d->req_off = nasty32(max_payload);
	d->req_len = nasty32(max_payload);
	d->resp_off = nasty32(max_payload);
	d->resp_cap = nasty32(max_payload);
}

static void scribble(uint64_t addr, uint64_t len)
{
	uint64_t off = rt_rand64(&rng) % (len - 7) & ~7ull;

	*(volatile uint64_t *)(uintptr_t)(addr + off) = rt_rand64(&rng);
}

int main(int argc, char **argv)
{
	const struct vmrpc_boot_info *bi = rt_boot_info();
	long iters = argc > 1 ? strtol(argv[1], NULL, 0) : 100000;
	unsigned cpu = rt_cpu_id();
	volatile struct vmrpc_shared_hdr *hdr;
	uint64_t base, size, chan_off, stride, chan_bytes, past_lo, past_hi;
	uint32_t vcpus, entries, max_payload;
	uint8_t *chan;

	rng = argc > 2 ? strtoul(argv[2], NULL, 0) : 1;
	if (!bi->shared_base || bi->shared_size < 4096) {
		printf("hostile: no VM RPC shared region\n");
		return 1;
	}
	base = bi->shared_base;
	size = bi->shared_size;
	hdr = (volatile struct vmrpc_shared_hdr *)(uintptr_t)base;
	/* Read the layout once, before we start corrupting it. */
	vcpus = hdr->vcpu_count;
	entries = hdr->ring_entries;
	max_payload = hdr->max_payload;
	chan_off = hdr->chan_offset;
	stride = hdr->chan_stride;
	chan_bytes = VMRPC_CHAN_DATA_OFFSET + 2ull * max_payload;
	if (hdr->magic != VMRPC_SHARED_MAGIC || cpu >= vcpus || vcpus > VMRPC_MAX_VCPUS ||
	    !entries || entries > VMRPC_RPC_RING_ENTRIES || !max_payload ||
	    max_payload > VMRPC_MAX_PAYLOAD || stride < chan_bytes || chan_off > size ||
	    (size - chan_off) / stride < vcpus) {
		printf("hostile: unexpected shared header\n");
		return 1;
	}
	chan = (uint8_t *)(uintptr_t)(base + chan_off + cpu * stride);

	protect_boot_structures();
	protect_boot_data(bi, argv, argc);
	past_lo = base + size;
	past_hi = past_lo + (1u << 20) < bi->mem_size ? past_lo + (1u << 20) : bi->mem_size;

	struct vmrpc_ring *req = (struct vmrpc_ring *)(chan + VMRPC_CHAN_REQ_RING_OFFSET);
	struct vmrpc_ring *resp = (struct vmrpc_ring *)(chan + VMRPC_CHAN_RESP_RING_OFFSET);
	volatile struct vmrpc_req_desc *slots = (volatile struct vmrpc_req_desc *)(req + 1);
	uint32_t head = req->head;

	printf("hostile: %ld iterations on vcpu %u, shared %#llx+%#llx\n", iters, cpu,
	       (unsigned long long)base, (unsigned long long)size);
	for (long it = 0; it < iters; it++) {
		uint64_t r = rt_rand64(&rng);

		switch (r % 16) {
		case 0 ... 5: {
			/* Garbage descriptors, usually published by a normal head step. */
			unsigned n = 1 + (unsigned)((r >> 8) % entries);

			for (unsigned i = 0; i < n; i++)
				random_desc(&slots[(head + i) % entries], max_payload);
			switch ((r >> 16) % 8) {
			case 0: head = (uint32_t)rt_rand64(&rng); break; /* wild jump */
			case 1: head -= 1; break;                        /* backwards */
			case 2: head += entries * 3; break;              /* laps the ring */
			default: head += n; break;
			}
			__atomic_store_n(&req->head, head, __ATOMIC_RELEASE);
			break;
		}
		case 6:
		case 7:
			/* The response ring: our consumer fields and the host's head. */
			switch ((r >> 8) % 5) {
			case 0: resp->tail = (uint32_t)rt_rand64(&rng); break;
			case 1: resp->consumer_waiting = (uint32_t)rt_rand64(&rng); break;
			case 2: resp->consumer_vcpu = (uint32_t)rt_rand64(&rng); break;
			case 3: resp->head = (uint32_t)rt_rand64(&rng); break;
			default: req->tail = (uint32_t)rt_rand64(&rng); break;
			}
			break;
		case 8:
			/* The shared header, including the host-owned line. */
			scribble(base, 128);
			break;
		case 9: {
			/* Another vCPU's channel (or our own, if we are alone). */
			unsigned victim = (unsigned)((r >> 8) % vcpus);

			scribble(base + chan_off + victim * stride, chan_bytes);
			break;
		}
		case 10: {
			/* RAM just past the shared region. */
			if (past_hi > past_lo + 8) {
				uint64_t a = past_lo + ((r >> 8) % (past_hi - past_lo - 8) & ~7ull);

				if (!is_protected(a, 8))
					*(volatile uint64_t *)(uintptr_t)a = rt_rand64(&rng);
			}
			break;
		}
		case 11:
			/* Our own data area. */
			scribble((uint64_t)(uintptr_t)chan + VMRPC_CHAN_DATA_OFFSET, 2ull * max_payload);
			break;
		default: {
			/* Almost valid: real functions, lengths at and around the edges. */
			volatile struct vmrpc_req_desc *d = &slots[head % entries];

			d->tag = (uint64_t)it;
			d->handle = (uint32_t)((r >> 8) % 4);
			d->function = (uint32_t)((r >> 12) % 3);
			d->req_off = (r >> 16) & 1 ? 0 : max_payload - (uint32_t)((r >> 20) % 8);
			d->req_len = (uint32_t)((r >> 24) % 16);
			d->resp_off = (r >> 32) & 1 ? max_payload : 2 * max_payload - 4;
			d->resp_cap = (uint32_t)((r >> 36) % 16);
			head++;
			__atomic_store_n(&req->head, head, __ATOMIC_RELEASE);
			break;
		}
		}
		mmio_write32(VMRPC_MMIO_DOORBELL, (uint32_t)(r >> 40));
	}
	printf("hostile done\n");
	return 0;
}
