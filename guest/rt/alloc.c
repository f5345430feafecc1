/*
 * Heap: first fit over one address-ordered free list, coalescing on free.
 * Guests allocate little and rarely, so simplicity beats speed here.
 *
 * Every block starts with a 16-byte header (size incl. header, state tag);
 * user memory follows it, so it is 16-byte aligned like the blocks.  A free
 * block also keeps its list link right after the header, hence the 32-byte
 * minimum block.
 */
#include "internal.h"

#define HDR 16u
#define MIN_BLOCK 32u
#define TAG_USED 0x55534544u /* "USED" */
#define TAG_FREE 0x46524545u /* "FREE" */

struct block {
	size_t size; /* bytes, including this header; multiple of 16 */
	uint32_t tag;
	uint32_t _pad;
	struct block *next; /* free blocks only */
};

_Static_assert(__builtin_offsetof(struct block, next) == HDR, "header size");

static struct block *free_list; /* ascending addresses */
static rt_spinlock_t heap_lock = RT_SPINLOCK_INIT;

static uintptr_t align_up(uintptr_t v, uintptr_t a)
{
	return (v + a - 1) & ~(a - 1);
}

void rt_heap_init(uintptr_t start, uintptr_t end)
{
	struct block *b;

	start = align_up(start, 16);
	end &= ~(uintptr_t)15;
	free_list = NULL;
	if (end <= start || end - start < MIN_BLOCK)
		return;
	b = (struct block *)start;
	b->size = end - start;
	b->tag = TAG_FREE;
	b->next = NULL;
	free_list = b;
}

/*
 * Finds the first free block that can hold `need` bytes (header included)
 * whose user area is `align`-aligned, and carves the allocation out of it.
 * Gaps before and after become free blocks when they are big enough to be
 * blocks; a too-small tail is simply given to the allocation.
 */
static void *carve(size_t need, size_t align)
{
	struct block **link = &free_list;
	struct block *fb;

	for (fb = free_list; fb; link = &fb->next, fb = fb->next) {
		uintptr_t base = (uintptr_t)fb, end = base + fb->size;
		uintptr_t hdr = align_up(base + HDR, align) - HDR;
		struct block *used, *tail = NULL;

		if (hdr != base && hdr - base < MIN_BLOCK)
			hdr = align_up(base + HDR + MIN_BLOCK, align) - HDR;
		if (hdr >= end || end - hdr < need)
			continue;

		if (end - (hdr + need) >= MIN_BLOCK) {
			tail = (struct block *)(hdr + need);
			tail->size = end - (hdr + need);
			tail->tag = TAG_FREE;
			tail->next = fb->next;
		} else {
			need = end - hdr;
		}

		if (hdr != base) {
			/* fb keeps its place in the list as the front gap. */
			fb->size = hdr - base;
			if (tail)
				fb->next = tail;
		} else {
			*link = tail ? tail : fb->next;
		}

		used = (struct block *)hdr;
		used->size = need;
		used->tag = TAG_USED;
		return (char *)used + HDR;
	}
	return NULL;
}

static void *alloc_aligned(size_t align, size_t size)
{
	size_t need;
	void *p;

	if (size > ((size_t)1 << 48))
		return NULL; /* also keeps the arithmetic below from overflowing */
	need = align_up(size, 16) + HDR;
	if (need < MIN_BLOCK)
		need = MIN_BLOCK;
	rt_spin_lock(&heap_lock);
	p = carve(need, align);
	rt_spin_unlock(&heap_lock);
	return p;
}

void *malloc(size_t size)
{
	return alloc_aligned(16, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	if (align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30))
		return NULL;
	return alloc_aligned(align < 16 ? 16 : align, size);
}

static struct block *header_of(void *p, const char *who)
{
	struct block *b = (struct block *)((char *)p - HDR);

	if (((uintptr_t)p & 15) || b->tag != TAG_USED) {
		printf("%s: bad pointer %p (%s)\n", who, p,
		       b->tag == TAG_FREE ? "double free?" : "not from malloc");
		abort();
	}
	return b;
}

void free(void *p)
{
	struct block *b, *prev = NULL, *next;

	if (!p)
		return;
	b = header_of(p, "free");
	rt_spin_lock(&heap_lock);
	b->tag = TAG_FREE;
	for (next = free_list; next && next < b; next = next->next)
		prev = next;

	if (next && (uintptr_t)b + b->size == (uintptr_t)next) {
		b->size += next->size;
		b->next = next->next;
	} else {
		b->next = next;
	}
	if (prev && (uintptr_t)prev + prev->size == (uintptr_t)b) {
		prev->size += b->size;
		prev->next = b->next;
	} else if (prev) {
		prev->next = b;
	} else {
		free_list = b;
	}
	rt_spin_unlock(&heap_lock);
}

void rt_heap_add(void *start, size_t len)
{
	uintptr_t lo = align_up((uintptr_t)start, 16), hi = ((uintptr_t)start + len) & ~(uintptr_t)15;
	struct block *b = (struct block *)lo;

	if (hi <= lo || hi - lo < MIN_BLOCK)
		return;
	/* A used block over the region, freed: free() links and coalesces it. */
	b->size = hi - lo;
	b->tag = TAG_USED;
	free((uint8_t *)b + HDR);
}

void *calloc(size_t n, size_t size)
{
	void *p;

	if (size && n > (size_t)-1 / size)
		return NULL;
	p = malloc(n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

void *realloc(void *p, size_t size)
{
	struct block *b;
	size_t have;
	void *q;

	if (!p)
		return malloc(size);
	if (size == 0) {
		free(p);
		return NULL;
	}
	b = header_of(p, "realloc");
	have = b->size - HDR;
	if (size <= have)
		return p;
	q = malloc(size);
	if (!q)
		return NULL;
	memcpy(q, p, have);
	free(p);
	return q;
}
