/*
 * Page protections of the program's memory (mprotect, mmap's PROT_*), kept
 * in the guest's own identity page tables.  The VMM maps RAM with 2 MiB pages
 * whose tables are user-writable pages below 64 KiB; the first time a range
 * inside a 2 MiB page needs other rights, that page is split into a 4 KiB
 * table from a static pool, with the same rights, so nothing changes until
 * entries are narrowed.  Rights removed only take effect after a TLB flush,
 * which needs ring 0: the runtime's `ud2; .byte 3` call (rt_flush_tlb).
 *
 * What is enforced: writes to pages without PROT_WRITE, any access to
 * PROT_NONE pages, and (the VMM sets EFER.NXE) instruction fetches from pages
 * in 4 KiB tables without PROT_EXEC fault (#PF, which ends the VM with
 * GuestCrashed, the personality's SIGSEGV).  Memory still mapped by a 2 MiB
 * page is read-write-execute: read-write requests leave such pages large (a
 * split costs a table and a PVM fault per 4 KiB page touched), so anonymous
 * read-write memory there stays executable.
 */
#include "linux.h"

#define PD_GPA 0xb000ull /* crates/vmm/src/layout.rs PD_START, one 4 KiB directory per GiB */
#define PTE_P 1ull
#define PTE_W 2ull
#define PTE_U 4ull
#define PTE_PS 0x80ull
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull
#define LARGE (2ull << 20)
#define PAGE 4096ull
#define POOL 128 /* 4 KiB tables: 256 MiB of split 2 MiB pages (bss below 4 MiB) */

static uint64_t pool[POOL][512] __attribute__((aligned(4096)));
static unsigned pool_used;
/* The directory entries over program memory as the VMM made them (exec puts them back). */
#define PD_ENTRIES (4 * 512) /* layout.rs: four directories, 4 GiB */
static uint64_t pd_initial[PD_ENTRIES];

static volatile uint64_t *pde_of(uint64_t va)
{
	return (volatile uint64_t *)(uintptr_t)(PD_GPA + (va / LARGE) * 8);
}

/* The 4 KiB entry of va, splitting its 2 MiB page if `split`; NULL if none. */
static volatile uint64_t *pte_of(uint64_t va, int split)
{
	volatile uint64_t *pde = pde_of(va);
	uint64_t v = *pde, *pt;

	if (!(v & PTE_P))
		return NULL;
	if (v & PTE_PS) {
		if (!split || pool_used == POOL)
			return NULL;
		pt = pool[pool_used++];
		for (unsigned i = 0; i < 512; i++)
			pt[i] = ((v & PTE_ADDR & ~(LARGE - 1)) + i * PAGE) | (v & 0x1f);
		/* Same rights as the large page: no flush needed for the switch. */
		*pde = (uint64_t)(uintptr_t)pt | PTE_P | PTE_W | PTE_U;
		v = *pde;
	}
	return (volatile uint64_t *)(uintptr_t)(v & PTE_ADDR) + ((va / PAGE) & 511);
}

static uint64_t rights(int prot)
{
	if (!(prot & (LX_PROT_READ | LX_PROT_WRITE | LX_PROT_EXEC)))
		return 0;
	return PTE_P | PTE_U | ((prot & LX_PROT_WRITE) ? PTE_W : 0) |
	       ((prot & LX_PROT_EXEC) ? 0 : PTE_NX);
}

long lx_prot_set(uint64_t addr, uint64_t len, int prot)
{
	uint64_t want = rights(prot), mask = PTE_P | PTE_W | PTE_U | PTE_NX;
	int rw = (prot & (LX_PROT_READ | LX_PROT_WRITE)) == (LX_PROT_READ | LX_PROT_WRITE);
	int narrowed = 0;
	long r = 0;

	if ((addr & (PAGE - 1)) || !lx_user_ok(addr, len))
		return -EINVAL;
	for (uint64_t va = addr; va < addr + len; va += PAGE) {
		volatile uint64_t *pte;
		uint64_t old;

		/* A whole large page already read-write stays large when asked for that. */
		if (rw && (*pde_of(va) & (PTE_PS | PTE_W)) == (PTE_PS | PTE_W))
			continue;
		pte = pte_of(va, 1);
		if (!pte) {
			r = -ENOMEM;
			break;
		}
		old = *pte;
		if ((old & mask) == want)
			continue;
		if (((old & mask) & ~want & ~PTE_NX) || (want & PTE_NX & ~old))
			narrowed = 1;
		*pte = (old & ~mask) | want;
	}
	if (narrowed)
		lx_tlb_narrowed(); /* the other vCPUs flush on their next call (tlb.c) */
	return r;
}

/*
 * A forked parent's page rights (fork.c): the directories over program memory
 * and the 4 KiB tables in use.  Tables the child split come back as free; the
 * caller flushes the TLB once they are written back.
 */
void lx_prot_fork_keep(void)
{
	uint64_t gib = (rt_boot_info()->shared_base + (1ull << 30) - 1) >> 30;

	lx_fork_keep((const volatile void *)(uintptr_t)PD_GPA, gib * PAGE);
	lx_fork_keep(&pool_used, sizeof(pool_used));
	lx_fork_keep(pool, pool_used * sizeof(pool[0]));
}

int lx_prot_writable(uint64_t addr)
{
	volatile uint64_t *pde = pde_of(addr), *pte;

	if ((*pde & (PTE_P | PTE_W)) != (PTE_P | PTE_W))
		return 0;
	if (*pde & PTE_PS)
		return 1;
	pte = pte_of(addr, 0);
	return pte && (*pte & (PTE_P | PTE_W)) == (PTE_P | PTE_W);
}

/* ---- the loaded program's own segments --------------------------------- */

#define AT_NULL 0
#define AT_PHDR 3
#define AT_PHNUM 5
#define AT_BASE 7
#define PT_LOAD 1
#define PT_PHDR 6
#define PF_X 1
#define PF_W 2
#define PF_R 4
#define EHDR_PHOFF 32
#define EHDR_PHNUM 56

struct lx_phdr {
	uint32_t type, flags;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

static int pf_prot(uint32_t pf)
{
	return ((pf & PF_R) ? LX_PROT_READ : 0) | ((pf & PF_W) ? LX_PROT_WRITE : 0) |
	       ((pf & PF_X) ? LX_PROT_EXEC : 0);
}

/* Gives each PT_LOAD segment at `bias` its p_flags (a page two segments share gets both). */
static void protect_segments(const struct lx_phdr *ph, uint64_t n, uint64_t bias)
{
	uint64_t prev_end = 0;
	int prev = 0;

	if (n > 128 || !lx_user_ok((uint64_t)(uintptr_t)ph, n * sizeof(*ph)))
		return;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t lo, hi;
		int prot = pf_prot(ph[i].flags);

		if (ph[i].type != PT_LOAD || !ph[i].memsz)
			continue;
		lo = (ph[i].vaddr + bias) & ~(PAGE - 1);
		hi = (ph[i].vaddr + bias + ph[i].memsz + PAGE - 1) & ~(PAGE - 1);
		if (lo < prev_end) {
			lx_prot_set(lo, PAGE, prot | prev);
			lo += PAGE;
		}
		if (lo < hi)
			lx_prot_set(lo, hi - lo, prot);
		prev_end = hi;
		prev = prot;
	}
}

/* The load bias of the program whose headers are at phdr (the host placed it). */
static int program_bias(const struct lx_phdr *ph, uint64_t n, uint64_t *bias)
{
	uint64_t at = (uint64_t)(uintptr_t)ph;

	for (uint64_t i = 0; i < n; i++)
		if (ph[i].type == PT_PHDR) {
			*bias = at - ph[i].vaddr;
			return 1;
		}
	/* No PT_PHDR (static executables): the headers follow the ELF header that
	 * the segment at file offset 0 maps. */
	for (uint64_t i = 0; i < n; i++) {
		if (ph[i].type != PT_LOAD || ph[i].offset)
			continue;
		if (at < 64 || !lx_user_ok(at - 64, 64) ||
		    memcmp((const void *)(uintptr_t)(at - 64), "\177ELF", 4) ||
		    *(const uint64_t *)(uintptr_t)(at - 64 + EHDR_PHOFF) != 64)
			return 0;
		*bias = at - 64 - ph[i].vaddr;
		return 1;
	}
	return 0;
}

/* exec: every page of program memory gets the VMM's rights back, the pool is free. */
void lx_prot_exec(void)
{
	uint64_t end = rt_boot_info()->shared_base / LARGE;

	for (uint64_t i = LX_PROGRAM_MIN / LARGE; i < end && i < PD_ENTRIES; i++)
		*pde_of(i * LARGE) = pd_initial[i];
	pool_used = 0;
}

void lx_prot_init_program(void)
{
	const uint64_t *w = (const uint64_t *)(uintptr_t)lx_info->sp;
	uint64_t phdr = 0, phnum = 0, base = 0, bias;

	static int pd_saved;

	if (!pd_saved) {
		for (uint64_t i = 0; i < PD_ENTRIES; i++)
			pd_initial[i] = *pde_of(i * LARGE);
		pd_saved = 1;
	}
	w += 1 + w[0] + 1; /* argc, argv, NULL */
	while (*w)
		w++;
	for (w++; w[0] != AT_NULL; w += 2) {
		if (w[0] == AT_PHDR)
			phdr = w[1];
		else if (w[0] == AT_PHNUM)
			phnum = w[1];
		else if (w[0] == AT_BASE)
			base = w[1];
	}
	if (phdr && phnum <= 128 && lx_user_ok(phdr, phnum * sizeof(struct lx_phdr)) &&
	    program_bias((const struct lx_phdr *)(uintptr_t)phdr, phnum, &bias))
		protect_segments((const struct lx_phdr *)(uintptr_t)phdr, phnum, bias);
	/* The interpreter: its ELF header is at AT_BASE (its first segment is at 0). */
	if (base && lx_user_ok(base, 64) && !memcmp((const void *)(uintptr_t)base, "\177ELF", 4)) {
		uint64_t off = *(const uint64_t *)(uintptr_t)(base + EHDR_PHOFF);
		uint16_t n = *(const uint16_t *)(uintptr_t)(base + EHDR_PHNUM);
		protect_segments((const struct lx_phdr *)(uintptr_t)(base + off), n, base);
	}
}
