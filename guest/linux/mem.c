/*
 * Memory: brk and mmap over the flat, identity-mapped guest memory the host
 * set aside ([brk_start, brk_max) and [mmap_lo, mmap_hi)).  Protections live
 * in the page tables (prot.c): a mapping gets its PROT_* rights, an unmapped
 * page PROT_NONE.  Memory handed out again is zeroed; memory never handed out
 * is still zero from the host.
 */
#include "linux.h"

#define PAGE 4096ull
#define MAX_PAGES ((3ull << 30) / PAGE)
#define PROT_WRITE 2
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define MADV_DONTNEED 4

static uint64_t used[MAX_PAGES / 64]; /* bit set: page of the mmap area in use */
static uint64_t shared[MAX_PAGES / 64]; /* bit set: a MAP_SHARED file page (no PROT_WRITE) */
static uint64_t area_lo, npages;
static uint64_t clean_lo;            /* pages at or above it were handed out before */
static uint64_t brk_cur, brk_high;
static uint64_t used_pages, peak_bytes; /* for getrusage's ru_maxrss (rusage.c) */
static uint64_t heap_lo;             /* the personality's heap: the mmap area's end */

#define LX_HEAP_MAX (16ull << 20)

static uint64_t page_up(uint64_t v)
{
	return (v + PAGE - 1) & ~(PAGE - 1);
}

void lx_mem_init(void)
{
	/* The personality's own heap (socket buffers: 256 KiB per guest-local
	 * connection) would not fit below the program: it takes the top of the
	 * mapping area, which the program's mmap then never hands out. */
	uint64_t heap = (lx_info->mmap_hi - lx_info->mmap_lo) / 8;
	uint64_t top;

	heap = heap > LX_HEAP_MAX ? LX_HEAP_MAX : heap & ~(PAGE - 1);
	top = lx_info->mmap_hi - heap;
	rt_heap_add((void *)(uintptr_t)top, heap);
	heap_lo = top;
	area_lo = lx_info->mmap_lo;
	npages = (top - area_lo) / PAGE;
	if (npages > MAX_PAGES)
		npages = MAX_PAGES;
	clean_lo = area_lo + npages * PAGE;
	brk_cur = brk_high = lx_info->brk_start;
}

uint64_t lx_mem_heap_lo(void)
{
	return heap_lo;
}

/*
 * exec: the new program's areas (the host checked that they end below the
 * heap, which stays with its pipes and sockets).  The old image left data
 * everywhere, so all memory handed out from now on is zeroed: clean_lo and
 * brk_high say "nothing is still zero".  A forked parent keeps those values
 * when it resumes (fork.c restores neither): cautious for it too.
 */
void lx_mem_exec(void)
{
	area_lo = lx_info->mmap_lo;
	npages = (heap_lo - area_lo) / PAGE;
	if (npages > MAX_PAGES)
		npages = MAX_PAGES;
	memset(used, 0, sizeof(used));
	memset(shared, 0, sizeof(shared));
	clean_lo = 0;
	brk_cur = lx_info->brk_start;
	brk_high = ~0ull;
}

static int test(uint64_t p)
{
	return (used[p / 64] >> (p % 64)) & 1;
}

static void mark_bits(uint64_t *bits, uint64_t first, uint64_t n, int on)
{
	for (uint64_t p = first; p < first + n; p++) {
		if (on)
			bits[p / 64] |= 1ull << (p % 64);
		else
			bits[p / 64] &= ~(1ull << (p % 64));
	}
}

/* Counts the pages whose `used` bit changes, then notes the peak mapped. */
static void mark(uint64_t first, uint64_t n, int on)
{
	for (uint64_t p = first; p < first + n; p++)
		if (test(p) != !!on)
			used_pages += on ? 1 : (uint64_t)-1;
	mark_bits(used, first, n, on);
	if (!on)
		mark_bits(shared, first, n, 0);
	lx_mem_mapped_peak();
}

/* The most the program has had mapped: its image (and ld.so's) up to the
 * break's high-water mark, plus the pages of the mmap area in use. */
uint64_t lx_mem_mapped_peak(void)
{
	uint64_t now = (brk_high - LX_PROGRAM_MIN) + used_pages * PAGE;

	if (now > peak_bytes)
		peak_bytes = now;
	return peak_bytes;
}

static int range_free(uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++)
		if (test(p))
			return 0;
	return 1;
}

/* Zeroes the part of [addr, addr + len) that was handed out before. */
static void zero_reused(uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;

	if (end > clean_lo) {
		uint64_t from = addr > clean_lo ? addr : clean_lo;
		memset((void *)(uintptr_t)from, 0, end - from);
	}
	if (addr < clean_lo)
		clean_lo = addr;
}

/* Highest free run of n pages (mappings grow down from the stack, like Linux). */
static int64_t find_free(uint64_t n)
{
	uint64_t run = 0;

	for (uint64_t p = npages; p-- > 0;) {
		if (p % 64 == 63 && used[p / 64] == ~0ull) {
			run = 0;
			p -= 63;
			continue;
		}
		if (test(p)) {
			run = 0;
			continue;
		}
		if (++run == n)
			return (int64_t)p;
	}
	return -1;
}

static int in_area(uint64_t addr, uint64_t len)
{
	return addr >= area_lo && len <= npages * PAGE && addr - area_lo <= npages * PAGE - len;
}

long lx_brk(uint64_t addr)
{
	if (addr < lx_info->brk_start || addr > lx_info->brk_max)
		return (long)brk_cur; /* Linux answers the current break on failure */
	if (addr > brk_cur && brk_cur < brk_high) {
		uint64_t end = addr < brk_high ? addr : brk_high;
		memset((void *)(uintptr_t)brk_cur, 0, end - brk_cur);
	}
	brk_cur = addr;
	if (addr > brk_high) {
		brk_high = page_up(addr);
		lx_mem_mapped_peak();
	}
	return (long)brk_cur;
}

long lx_mmap(uint64_t addr, uint64_t len, int prot, int flags, int fd, int64_t off)
{
	uint64_t n, first;
	int64_t p;
	long r;
	int file = !(flags & MAP_ANONYMOUS);

	if (!len || (addr & (PAGE - 1)) || (off & (int64_t)(PAGE - 1)) || off < 0)
		return -EINVAL;
	if (!(flags & (MAP_SHARED | MAP_PRIVATE)))
		return -EINVAL;
	if (!(flags & MAP_ANONYMOUS) && (flags & MAP_SHARED) && (prot & PROT_WRITE))
		return -ENODEV; /* shared writable file mappings: not served (docs/linux.md) */
	len = page_up(len);
	if (len > npages * PAGE)
		return -ENOMEM;
	n = len / PAGE;
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		if (!in_area(addr, len))
			return -ENOMEM;
		first = (addr - area_lo) / PAGE;
		if ((flags & MAP_FIXED_NOREPLACE) && !range_free(first, n))
			return -EEXIST;
		/* MAP_FIXED replaces: the old contents go (a file's bytes overwrite
		 * them below, so only the part past its end is zeroed: touching
		 * pages from the guest costs a PVM fault each). */
		lx_prot_set(addr, len, LX_PROT_READ | LX_PROT_WRITE);
		if (!file)
			memset((void *)(uintptr_t)addr, 0, len);
		if (addr < clean_lo)
			clean_lo = addr;
	} else {
		p = find_free(n);
		if (p < 0)
			return -ENOMEM;
		first = (uint64_t)p;
		addr = area_lo + first * PAGE;
		lx_prot_set(addr, len, LX_PROT_READ | LX_PROT_WRITE);
		if (!file)
			zero_reused(addr, len);
		else if (addr < clean_lo)
			clean_lo = addr;
	}
	mark(first, n, 1);
	if (file) {
		/* A private copy of the file (MAP_SHARED only read-only: the same),
		 * written by the host; zeros after the file's end. */
		r = lx_fd_pread_into(fd, (void *)(uintptr_t)addr, len, off);
		if (r < 0) {
			mark(first, n, 0);
			lx_prot_set(addr, len, 0);
			return r;
		}
		memset((void *)(uintptr_t)(addr + (uint64_t)r), 0, len - (uint64_t)r);
		mark_bits(shared, first, n, flags & MAP_SHARED);
		if (prot & LX_PROT_EXEC)
			lx_code_rewrite(addr, (uint64_t)r);
	}
	r = lx_prot_set(addr, len, prot);
	if (r < 0) {
		mark(first, n, 0);
		return r;
	}
	return (long)addr;
}

long lx_munmap(uint64_t addr, uint64_t len)
{
	if ((addr & (PAGE - 1)) || !len)
		return -EINVAL;
	len = page_up(len);
	if (!in_area(addr, len))
		return 0; /* nothing of ours is mapped there */
	mark((addr - area_lo) / PAGE, len / PAGE, 0);
	/* Best effort: with the table pool used up, unmapped pages stay accessible. */
	lx_prot_set(addr, len, 0);
	return 0;
}

long lx_mprotect(uint64_t addr, uint64_t len, int prot)
{
	if ((addr & (PAGE - 1)) || (prot & ~(LX_PROT_READ | LX_PROT_WRITE | LX_PROT_EXEC)))
		return -EINVAL;
	len = page_up(len);
	if (!len)
		return 0;
	if (!lx_user_ok(addr, len))
		return -ENOMEM;
	if ((prot & LX_PROT_WRITE) && in_area(addr, len)) {
		uint64_t first = (addr - area_lo) / PAGE;
		for (uint64_t p = first; p < first + len / PAGE; p++)
			if ((shared[p / 64] >> (p % 64)) & 1)
				return -EACCES; /* a shared file mapping cannot become writable */
	}
	return lx_prot_set(addr, len, prot);
}

long lx_mremap(uint64_t old, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr)
{
	uint64_t first, on, nn;
	long moved;

	(void)new_addr;
	if ((old & (PAGE - 1)) || !new_len || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)))
		return -EINVAL;
	if (flags & MREMAP_FIXED)
		return -EINVAL; /* not needed by static programs seen so far */
	old_len = page_up(old_len);
	new_len = page_up(new_len);
	if (!old_len || !in_area(old, old_len))
		return -EFAULT;
	first = (old - area_lo) / PAGE;
	on = old_len / PAGE;
	nn = new_len / PAGE;
	if (nn <= on) {
		mark(first + nn, on - nn, 0);
		lx_prot_set(old + new_len, old_len - new_len, 0);
		return (long)old;
	}
	if (first + nn <= npages && range_free(first + on, nn - on)) {
		lx_prot_set(old + old_len, new_len - old_len, LX_PROT_READ | LX_PROT_WRITE);
		zero_reused(old + old_len, new_len - old_len);
		mark(first + on, nn - on, 1);
		return (long)old;
	}
	if (!(flags & MREMAP_MAYMOVE))
		return -ENOMEM;
	moved = lx_mmap(0, new_len, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (moved < 0)
		return moved;
	memcpy((void *)(uintptr_t)moved, (void *)(uintptr_t)old, old_len);
	mark(first, on, 0);
	lx_prot_set(old, old_len, 0);
	return moved;
}

long lx_madvise(uint64_t addr, uint64_t len, int advice)
{
	if (addr & (PAGE - 1))
		return -EINVAL;
	/* DONTNEED on private anonymous memory means "reads return zeros now";
	 * pages the program cannot write are left as they are. */
	if (advice == MADV_DONTNEED && in_area(addr, page_up(len)))
		for (uint64_t va = addr; va < addr + page_up(len); va += PAGE)
			if (lx_prot_writable(va))
				memset((void *)(uintptr_t)va, 0, PAGE);
	return 0;
}

/*
 * What a forked parent needs back (fork.c): the program image and brk area,
 * the mmap pages in use, its stack from below rsp (the red zone and the
 * rewritten call's slot included) to the top, and this file's bookkeeping.
 * brk_high and clean_lo only say which memory is still zero: the child's
 * values stay (they can only be more cautious).
 */
#define FORK_MMAP_RUNS 768

void lx_mem_fork_keep(uint64_t rsp)
{
	uint64_t stack_lo = lx_info->mmap_hi, stack_hi = rt_boot_info()->shared_base;
	uint64_t words = (npages + 63) / 64, runs = 0, first = npages;

	lx_fork_keep(&brk_cur, sizeof(brk_cur));
	lx_fork_keep(&area_lo, sizeof(area_lo)); /* a child's exec moves the areas */
	lx_fork_keep(&npages, sizeof(npages));
	lx_fork_keep(used, words * sizeof(used[0]));
	lx_fork_keep(shared, words * sizeof(shared[0]));
	lx_fork_keep_user(LX_PROGRAM_MIN, page_up(brk_cur) - LX_PROGRAM_MIN);
	/* A program running on a stack of its own (in the mmap area) keeps all of the main one. */
	if (rsp > stack_lo + 4 * PAGE && rsp <= stack_hi)
		stack_lo = (rsp - 2 * PAGE) & ~(PAGE - 1);
	lx_fork_keep_user(stack_lo, stack_hi - stack_lo);
	for (uint64_t p = 0; p < npages; p++) {
		if (test(p) && (p == 0 || !test(p - 1))) {
			runs++;
			if (first == npages)
				first = p;
		}
	}
	if (runs > FORK_MMAP_RUNS) {
		/* Too scattered to list: everything from the lowest page in use up. */
		lx_fork_keep_user(area_lo + first * PAGE, (npages - first) * PAGE);
		return;
	}
	for (uint64_t p = 0; p < npages; p++) {
		uint64_t n = 0;

		while (p + n < npages && test(p + n))
			n++;
		if (n)
			lx_fork_keep_user(area_lo + p * PAGE, n * PAGE);
		p += n;
	}
}
