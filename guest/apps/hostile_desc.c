/*
 * A hostile guest that keeps its RPC ring VALID (head moves one step per
 * request, the response ring is consumed in order) and puts bad descriptors
 * on it, so that every request reaches the host's descriptor validation
 * instead of its ring resynchronisation (hostile.c mostly trips the latter).
 * Then it exhausts the module handles.  One line per case:
 *   case <name> rc=<status> tag=<ok|BAD>
 *   binds ok=<n> then rc=<status>
 * and "hostile_desc done".  The host-side test checks the codes.
 *
 * The raw calls come first, before any library call: the library copies the
 * ring indices once, at its first call, and continues from there.
 */
#include <vmrpc.h>

struct chan {
	volatile struct vmrpc_shared_hdr *hdr;
	struct vmrpc_ring *req, *resp;
	volatile struct vmrpc_req_desc *req_slots;
	volatile struct vmrpc_resp_desc *resp_slots;
	uint8_t *data;
	uint32_t entries, max_payload;
	uint64_t next_tag;
};

static int chan_setup(struct chan *c)
{
	const struct vmrpc_boot_info *bi = rt_boot_info();
	volatile struct vmrpc_shared_hdr *hdr;
	uint64_t base;

	if (!bi->shared_base)
		return -1;
	base = bi->shared_base;
	hdr = (volatile struct vmrpc_shared_hdr *)(uintptr_t)base;
	if (hdr->magic != VMRPC_SHARED_MAGIC || hdr->ring_entries == 0 ||
	    hdr->ring_entries > VMRPC_RPC_RING_ENTRIES || hdr->max_payload != VMRPC_MAX_PAYLOAD ||
	    rt_cpu_id() != 0)
		return -1;
	uint8_t *chan = (uint8_t *)(uintptr_t)(base + hdr->chan_offset);

	c->hdr = hdr;
	c->entries = hdr->ring_entries;
	c->max_payload = hdr->max_payload;
	c->req = (struct vmrpc_ring *)(chan + VMRPC_CHAN_REQ_RING_OFFSET);
	c->resp = (struct vmrpc_ring *)(chan + VMRPC_CHAN_RESP_RING_OFFSET);
	c->req_slots = (volatile struct vmrpc_req_desc *)(c->req + 1);
	c->resp_slots = (volatile struct vmrpc_resp_desc *)(c->resp + 1);
	c->data = chan + VMRPC_CHAN_DATA_OFFSET;
	c->next_tag = 0x7a6000;
	return 0;
}

/* Posts one descriptor on a well-formed ring and spins for its answer. */
static int32_t raw_call(struct chan *c, struct vmrpc_req_desc d, int *tag_ok)
{
	uint32_t head = __atomic_load_n(&c->req->head, __ATOMIC_RELAXED);
	uint32_t tail = __atomic_load_n(&c->resp->tail, __ATOMIC_RELAXED);
	volatile struct vmrpc_req_desc *slot = &c->req_slots[head % c->entries];
	int32_t status;

	d.tag = c->next_tag++;
	slot->tag = d.tag;
	slot->handle = d.handle;
	slot->function = d.function;
	slot->req_off = d.req_off;
	slot->req_len = d.req_len;
	slot->resp_off = d.resp_off;
	slot->resp_cap = d.resp_cap;
	__atomic_store_n(&c->req->head, head + 1, __ATOMIC_RELEASE);
	rt_mb();
	if (c->hdr->host_sleeping)
		mmio_write32(VMRPC_MMIO_DOORBELL, 1);
	while (__atomic_load_n(&c->resp->head, __ATOMIC_ACQUIRE) == tail)
		cpu_relax();
	*tag_ok = c->resp_slots[tail % c->entries].tag == d.tag;
	status = c->resp_slots[tail % c->entries].status;
	__atomic_store_n(&c->resp->tail, tail + 1, __ATOMIC_RELEASE);
	return status;
}

static void show(struct chan *c, const char *name, struct vmrpc_req_desc d)
{
	int tag_ok = 0;
	int32_t rc = raw_call(c, d, &tag_ok);

	printf("case %s rc=%d tag=%s\n", name, rc, tag_ok ? "ok" : "BAD");
}

int main(void)
{
	struct chan c;
	int tag_ok = 0;
	uint32_t echo, max;

	if (chan_setup(&c)) {
		printf("hostile_desc: unexpected shared region\n");
		return 1;
	}
	max = c.max_payload;

	/* Bind "echo" 1.0 through the system module, by hand. */
	uint32_t version = VMRPC_VERSION(1, 0);
	memcpy(c.data, &version, 4);
	memcpy(c.data + 4, "echo", 4);
	int32_t rc = raw_call(&c,
			      (struct vmrpc_req_desc){ .handle = VMRPC_SYS_HANDLE,
						       .function = VMRPC_SYS_BIND,
						       .req_len = 8,
						       .resp_off = max,
						       .resp_cap = 4 },
			      &tag_ok);
	if (rc != 4 || !tag_ok) {
		printf("hostile_desc: bind rc=%d\n", rc);
		return 1;
	}
	memcpy(&echo, c.data + max, 4);

	/* Valid at the very edges: a full payload from the top half, answered into the bottom. */
	memset(c.data + max, 'v', max);
	show(&c, "edge_valid",
	     (struct vmrpc_req_desc){ .handle = echo, .req_off = max, .req_len = max, .resp_cap = max });
	show(&c, "empty_valid",
	     (struct vmrpc_req_desc){ .handle = echo, .req_off = 2 * max, .resp_off = 2 * max });

	/* Each of these breaks exactly one rule of validate_req. */
	show(&c, "req_past_data",
	     (struct vmrpc_req_desc){ .handle = echo, .req_off = 2 * max - 4, .req_len = 8, .resp_cap = 8 });
	show(&c, "req_over_cap",
	     (struct vmrpc_req_desc){ .handle = echo, .req_len = max + 1, .resp_off = max, .resp_cap = 8 });
	show(&c, "req_wraps",
	     (struct vmrpc_req_desc){ .handle = echo, .req_off = 0xfffffff0u, .req_len = 0x20, .resp_cap = 8 });
	show(&c, "resp_past_data",
	     (struct vmrpc_req_desc){ .handle = echo, .req_len = 1, .resp_off = 2 * max, .resp_cap = 1 });
	show(&c, "resp_over_cap",
	     (struct vmrpc_req_desc){ .handle = echo, .req_len = 1, .resp_cap = max + 1 });
	show(&c, "resp_wraps",
	     (struct vmrpc_req_desc){ .handle = echo, .req_len = 1, .resp_off = 0xffffffffu, .resp_cap = 2 });

	/* Handles: one is taken already; bind until the host says no. */
	long ok = 0;
	int last;

	for (;;) {
		last = bind_module("echo", VMRPC_VERSION(1, 0));
		if (last < 0 || ok > 100000)
			break;
		ok++;
	}
	printf("binds ok=%ld then rc=%d\n", ok, last);
	printf("hostile_desc done\n");
	return 0;
}
