/*
 * Threads (docs/linux.md, "Threads"): up to LX_MAX_THREADS, scheduled by the
 * host over the VM's vCPUs (vcpu_abi.h; crates/vmm/src/vm/pool.rs).  Each
 * thread has a slot here: its state, its syscall stack and its GS block (the
 * main thread, slot 0, keeps vCPU 0's GS page).  clone fills a free slot and
 * asks the host to start a thread at lx_thread_start on that slot's stack;
 * exit asks the host to end the calling thread, which frees its slot.  The
 * last thread to exit ends the program.
 *
 * clone/clone3 serve what pthread_create passes (glibc and musl); without
 * CLONE_VM they fork (fork.c, "child first"); other flag sets answer EINVAL.
 */
#include "linux.h"
#include "vcpu_abi.h"

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_SETTLS 0x80000
#define CLONE_PARENT_SETTID 0x100000
#define CLONE_CHILD_CLEARTID 0x200000
#define CLONE_DETACHED 0x400000
#define CLONE_CHILD_SETTID 0x1000000
#define CLONE_THREAD 0x10000
#define CLONE_VFORK 0x4000
#define CSIGNAL 0xff
#define SIGCHLD 17
/* What glibc's fork and vfork-style spawns pass without CLONE_VM. */
#define FORK_MAY                                                                          \
	(CSIGNAL | CLONE_VFORK | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID)
#define CLONE_SYSVSEM 0x40000
#define THREAD_NEEDS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD)
#define THREAD_MAY                                                                        \
	(THREAD_NEEDS | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |               \
	 CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | CLONE_DETACHED)

#define FUTEX_WAITERS 0x80000000u
#define FUTEX_OWNER_DIED 0x40000000u
#define FUTEX_TID_MASK 0x3fffffffu
#define ROBUST_LIST_LIMIT 2048

/* T_IDLE must be 0: the host stores 0 when an exited thread's slot is free. */
enum { T_IDLE, T_START, T_RUNNING, T_EXITING };

/* A new thread's registers, in the order lx_thread_enter loads them. */
struct lx_thread_regs {
	uint64_t rdi, rsi, rdx, r10, r8, r9, rax, rbx, rbp, r12, r13, r14, r15;
	uint64_t rflags, rip, rsp;
};

struct lx_thread {
	volatile uint32_t state; /* T_*; the host frees the slot through it */
	uint32_t tid;
	uint64_t clear_tid; /* CLONE_CHILD_CLEARTID / set_tid_address */
	uint64_t robust;    /* set_robust_list */
	uint64_t fs;
	struct lx_thread_regs regs;
} __attribute__((aligned(64)));

struct robust_list_head {
	uint64_t next;
	int64_t futex_offset;
	uint64_t pending;
};

struct clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* A thread's GS block (linux_abi.h LX_GS_*; the runtime's words first). */
struct lx_gs_block {
	uint32_t cpu;    /* written by the host: the vCPU the thread runs on */
	uint32_t thread; /* the runtime's thread index (rt_thread_id): the slot */
	uint64_t rt_percpu, user_rsp, stack, handler, zpoline;
	uint32_t in_personality, slot;
	uint64_t spare;
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct lx_gs_block, stack) == LX_GS_STACK, "GS layout");
_Static_assert(__builtin_offsetof(struct lx_gs_block, zpoline) == LX_GS_ZPOLINE, "GS layout");
_Static_assert(__builtin_offsetof(struct lx_gs_block, in_personality) == LX_GS_IN_PERSONALITY,
	       "GS layout");
_Static_assert(__builtin_offsetof(struct lx_gs_block, slot) == LX_GS_SLOT, "GS layout");
_Static_assert(sizeof(struct lx_gs_block) == 64, "the host writes within 64 bytes");

static struct lx_thread threads[LX_MAX_THREADS];
static struct lx_gs_block gs_blocks[LX_MAX_THREADS]; /* [0] unused: vCPU 0's page */
static volatile uint32_t live = 1;
static uint32_t next_tid = 2;
#define SYSCALL_STACK 32768
/* Each other slot's area: the socket library's scratch buffer (per thread:
 * a thread waiting for a host call lends its vCPU to others), then the
 * syscall stack. */
#define SLOT_AREA (VMRPC_MAX_PAYLOAD + SYSCALL_STACK)
/* The main thread's syscall stack; the others' slot areas are one mapping in
 * the program's area, made at the first clone (the personality's image must
 * end below the program: 63 more would not fit there). */
static uint8_t main_stack[SYSCALL_STACK] __attribute__((aligned(16)));
static uint64_t stacks;

void lx_syscall_entry(void);
void lx_zpoline_entry(void);
_Noreturn void lx_thread_enter(struct lx_thread_regs *r);

unsigned lx_thread_slot(void)
{
	uint32_t slot;

	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(slot) : "i"(LX_GS_SLOT));
	return slot < LX_MAX_THREADS ? slot : 0;
}

static struct lx_thread *self(void)
{
	return &threads[lx_thread_slot()];
}

int lx_threads_alone(void)
{
	return __atomic_load_n(&live, __ATOMIC_ACQUIRE) == 1;
}

static void gs_write(unsigned off, uint64_t v)
{
	__asm__ volatile("movq %0, %%gs:(%1)" : : "r"(v), "r"((uint64_t)off) : "memory");
}

static uint64_t gs_read(unsigned off)
{
	uint64_t v;

	__asm__ volatile("movq %%gs:(%1), %0" : "=r"(v) : "r"((uint64_t)off));
	return v;
}

static uint64_t stack_top(unsigned slot)
{
	if (slot == 0)
		return (uint64_t)(uintptr_t)&main_stack[SYSCALL_STACK];
	return stacks + (uint64_t)slot * SLOT_AREA; /* the top of area slot - 1 */
}

/* The other threads' syscall stacks: 0, or -errno if they cannot be mapped. */
static long map_stacks(void)
{
	long r;

	if (stacks)
		return 0;
	r = lx_mmap(0, (uint64_t)(LX_MAX_THREADS - 1) * SLOT_AREA, 3 /* PROT_READ|WRITE */,
		    0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
	if (r < 0)
		return r;
	stacks = (uint64_t)r; /* slot 1's area starts the mapping */
	return 0;
}

/* The main thread's GS words, on vCPU 0's page (main.c, at boot). */
void lx_cpu_setup(void)
{
	gs_write(LX_GS_STACK, stack_top(0));
	gs_write(LX_GS_HANDLER, (uint64_t)(uintptr_t)lx_syscall_entry);
	gs_write(LX_GS_ZPOLINE, (uint64_t)(uintptr_t)lx_zpoline_entry);
	__asm__ volatile("movl $1, %%gs:%c0\n\tmovl $0, %%gs:%c1"
			 : : "i"(LX_GS_IN_PERSONALITY), "i"(LX_GS_SLOT) : "memory");
	threads[0].tid = 1; /* the main thread's tid is the pid */
	threads[0].state = T_RUNNING;
}

/* A new thread's first instructions (the host starts it here, on its slot's stack). */
_Noreturn void lx_thread_start(struct lx_thread *t)
{
	t->state = T_RUNNING;
	lx_tlb_catch_up();
	__asm__ volatile("wrfsbase %0" : : "r"(t->fs) : "memory");
	lx_thread_enter(&t->regs);
}

/* Slot `i`'s GS block, from the caller's runtime words; the host writes `cpu`. */
static uint64_t gs_block_for(unsigned i)
{
	struct lx_gs_block *g = &gs_blocks[i];

	memset(g, 0, sizeof(*g));
	g->rt_percpu = gs_read(8);
	g->handler = gs_read(LX_GS_HANDLER);
	g->zpoline = gs_read(LX_GS_ZPOLINE);
	g->stack = stack_top(i);
	g->in_personality = 1; /* until lx_thread_enter leaves for the program */
	g->slot = i;
	g->thread = i;
	/* Set at every start: after an exec the old area is gone. */
	vmrpc_sock_set_thread_scratch(i, (uint8_t *)(uintptr_t)(stack_top(i) - SLOT_AREA));
	return (uint64_t)(uintptr_t)g;
}

/* Asks the host to start slot `i`'s thread: 0 or -EAGAIN. */
static long host_spawn(unsigned i)
{
	struct lx_thread_spawn req = {
		(uint64_t)(uintptr_t)lx_thread_start,
		stack_top(i) - 8, /* as after a call: the function's frame stays aligned */
		(uint64_t)(uintptr_t)&threads[i],
		gs_block_for(i),
		-EAGAIN, /* what stays if the host has no thread device */
	};

	mmio_write64(LX_MMIO_THREAD + LX_THREAD_SPAWN, (uint64_t)(uintptr_t)&req);
	__asm__ volatile("" : : : "memory");
	return (long)req.result;
}

static int u32_ok(uint64_t addr)
{
	return !(addr & 3) && lx_user_ok(addr, 4);
}

static long put_u32(uint64_t addr, uint32_t v)
{
	if (!u32_ok(addr))
		return -EFAULT;
	*(volatile uint32_t *)(uintptr_t)addr = v;
	return 0;
}

uint32_t lx_new_tid(void)
{
	uint32_t tid = next_tid++;

	if (next_tid > FUTEX_TID_MASK)
		next_tid = 2;
	return tid;
}

/* The new thread's registers: the caller's at its syscall, with rax and rsp given. */
static struct lx_thread_regs regs_from(const struct lx_frame *f, uint64_t rax, uint64_t rsp)
{
	return (struct lx_thread_regs){f->rdi, f->rsi, f->rdx, f->r10, f->r8,  f->r9,
				       rax,    f->rbx, f->rbp, f->r12, f->r13, f->r14,
				       f->r15, f->rflags, f->rip, rsp};
}

/* A forked parent resumes on this vCPU (fork.c): its syscall returns rax. */
_Noreturn void lx_thread_resume(const struct lx_frame *f, uint64_t rax, uint64_t fs)
{
	static struct lx_thread_regs resume[LX_MAX_THREADS];
	struct lx_thread_regs *r = &resume[lx_thread_slot()];

	*r = regs_from(f, rax, f->rsp);
	__asm__ volatile("wrfsbase %0" : : "r"(fs) : "memory");
	lx_thread_enter(r);
}

/* This thread's state and the live count: a forked child's changes are undone. */
void lx_thread_fork_keep(void)
{
	lx_fork_keep(self(), sizeof(struct lx_thread));
	lx_fork_keep(&live, sizeof(live));
}

void lx_thread_exec(void)
{
	struct lx_thread *t = self();

	t->clear_tid = 0; /* the old program's words are gone */
	t->robust = 0;
	stacks = 0; /* the stacks' mapping went with the old program's memory */
}

void lx_thread_forked(uint32_t tid, uint64_t clear_tid)
{
	struct lx_thread *t = self();

	t->tid = tid;
	t->clear_tid = clear_tid;
	t->robust = 0; /* Linux clears the child's robust list */
}

static long fork_clone(const struct lx_frame *f, uint64_t flags, uint64_t stack, uint64_t ptid,
		       uint64_t ctid, uint64_t tls)
{
	(void)tls;
	/* A child on another stack would need the parent's stack saved twice: not served. */
	if ((flags & ~(uint64_t)FORK_MAY) || stack ||
	    ((flags & CSIGNAL) && (flags & CSIGNAL) != SIGCHLD))
		return -EINVAL;
	if ((flags & CLONE_PARENT_SETTID) && !u32_ok(ptid))
		return -EFAULT;
	return lx_fork(f, flags, (flags & CLONE_PARENT_SETTID) ? ptid : 0, ctid);
}

/*
 * CLONE_VM|CLONE_VFORK on a stack of the caller's (glibc's posix_spawn):
 * Linux suspends the parent until the child execs or exits, which is the
 * order a child-first fork keeps, so it is served as one whose child starts on
 * that stack (rax = 0, the caller's other registers: glibc's wrappers keep the
 * function to call in them).  What differs from a shared address space: what
 * the child writes before its exec is undone for the parent, which gets its
 * memory back as at the clone.  glibc's child writes only its own stack and,
 * when its exec fails, an error word the parent reads: such a posix_spawn
 * reports success, and the child's exit status 127, instead of the errno.
 */
static long vfork_clone(const struct lx_frame *f, uint64_t flags, uint64_t stack, uint64_t ptid,
			uint64_t ctid)
{
	struct lx_frame child;
	uint64_t fs;
	long r;

	if ((flags & ~(uint64_t)(FORK_MAY | CLONE_VM)) || !stack ||
	    ((flags & CSIGNAL) && (flags & CSIGNAL) != SIGCHLD))
		return -EINVAL;
	if (!lx_user_ok(stack - 64, 64) || ((flags & CLONE_PARENT_SETTID) && !u32_ok(ptid)))
		return -EFAULT;
	r = lx_fork(f, flags & ~(uint64_t)CLONE_VM, (flags & CLONE_PARENT_SETTID) ? ptid : 0, ctid);
	if (r != 0)
		return r; /* refused; the parent's own return comes when the child ends */
	child = *f;
	child.rsp = stack;
	__asm__ volatile("rdfsbase %0" : "=r"(fs));
	lx_thread_resume(&child, 0, fs);
}

static long do_clone(const struct lx_frame *f, uint64_t flags, uint64_t stack, uint64_t ptid,
		     uint64_t ctid, uint64_t tls)
{
	struct lx_thread *t = NULL;
	unsigned i;
	uint32_t tid;

	if (!(flags & CLONE_VM))
		return fork_clone(f, flags, stack, ptid, ctid, tls);
	if ((flags & (CLONE_VFORK | CLONE_THREAD)) == CLONE_VFORK)
		return vfork_clone(f, flags, stack, ptid, ctid);
	if ((flags & THREAD_NEEDS) != THREAD_NEEDS || (flags & ~(uint64_t)THREAD_MAY) || !stack)
		return -EINVAL;
	/* A forked child's threads would outlive it, running in its parent's memory. */
	if (lx_forked())
		return -EAGAIN;
	/* Checked, not written: musl's ctid is its thread-list lock, held by the caller. */
	if (((flags & CLONE_PARENT_SETTID) && !u32_ok(ptid)) ||
	    ((flags & (CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID)) && !u32_ok(ctid)))
		return -EFAULT;
	/* Slot 0 stays the main thread's (its GS block is vCPU 0's page). */
	for (i = 1; i < LX_MAX_THREADS; i++) {
		if (__atomic_load_n(&threads[i].state, __ATOMIC_ACQUIRE) == T_IDLE) {
			t = &threads[i];
			break;
		}
	}
	if (!t)
		return -EAGAIN; /* LX_MAX_THREADS live already */
	if (map_stacks() < 0)
		return -EAGAIN;
	tid = lx_new_tid();
	t->tid = tid;
	t->clear_tid = (flags & CLONE_CHILD_CLEARTID) ? ctid : 0;
	t->robust = 0;
	if (flags & CLONE_SETTLS)
		t->fs = tls;
	else
		__asm__ volatile("rdfsbase %0" : "=r"(t->fs));
	t->regs = regs_from(f, 0, stack);
	if (flags & CLONE_PARENT_SETTID)
		put_u32(ptid, tid);
	if (flags & CLONE_CHILD_SETTID)
		put_u32(ctid, tid);
	__atomic_add_fetch(&live, 1, __ATOMIC_SEQ_CST);
	t->state = T_START;
	if (host_spawn(i) != 0) {
		__atomic_sub_fetch(&live, 1, __ATOMIC_SEQ_CST);
		t->state = T_IDLE;
		return -EAGAIN;
	}
	return tid;
}

static long do_clone3(const struct lx_frame *f, uint64_t uargs, uint64_t size)
{
	struct clone_args a;

	if (size < sizeof(a) || size > 4096)
		return -EINVAL;
	if (!lx_user_ok(uargs, sizeof(a)))
		return -EFAULT;
	memcpy(&a, (const void *)(uintptr_t)uargs, sizeof(a));
	/* pidfd is only read with CLONE_PIDFD, which threads do not get (glibc fills it anyway). */
	if (a.exit_signal > CSIGNAL)
		return -EINVAL;
	if ((a.flags & (CLONE_VM | CLONE_VFORK | CLONE_THREAD)) == (CLONE_VM | CLONE_VFORK))
		return a.stack + a.stack_size < a.stack
			       ? -EINVAL
			       : vfork_clone(f, a.flags | a.exit_signal, a.stack + a.stack_size,
					     a.parent_tid, a.child_tid);
	if (a.exit_signal && (a.flags & CLONE_VM))
		return -EINVAL;
	if (!(a.flags & CLONE_VM))
		return a.stack ? -EINVAL : fork_clone(f, a.flags | a.exit_signal, 0, a.parent_tid,
							a.child_tid, a.tls);
	if (a.stack + a.stack_size < a.stack)
		return -EINVAL;
	return do_clone(f, a.flags, a.stack + a.stack_size, a.parent_tid, a.child_tid, a.tls);
}

/* Marks a robust futex the dying thread held: owner died, one waiter woken. */
static void robust_release(uint64_t word, uint32_t tid)
{
	volatile uint32_t *w = (volatile uint32_t *)(uintptr_t)word;
	uint32_t v;

	if ((word & 3) || !lx_user_ok(word, 4))
		return;
	v = *w;
	do {
		if ((v & FUTEX_TID_MASK) != tid)
			return;
	} while (!__atomic_compare_exchange_n(w, &v, (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED, 0,
					      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	if (v & FUTEX_WAITERS)
		lx_futex_wake(w, 1);
}

/* Walks the thread's robust list as Linux does at thread death (bounded). */
static void robust_walk(const struct lx_thread *t)
{
	struct robust_list_head h;
	uint64_t entry, next, pending;
	int limit = ROBUST_LIST_LIMIT;

	if (!t->robust || !lx_user_ok(t->robust, sizeof(h)))
		return;
	memcpy(&h, (const void *)(uintptr_t)t->robust, sizeof(h));
	pending = h.pending & ~1ull;
	entry = h.next & ~1ull;
	while (entry != t->robust && limit-- > 0) {
		if (!lx_user_ok(entry, 8))
			break;
		next = *(volatile uint64_t *)(uintptr_t)entry & ~1ull;
		if (entry != pending)
			robust_release(entry + (uint64_t)h.futex_offset, t->tid);
		entry = next;
	}
	if (pending)
		robust_release(pending + (uint64_t)h.futex_offset, t->tid);
}

/* exit(2): this thread only.  The last thread's exit ends the program. */
static _Noreturn void thread_exit(int status)
{
	struct lx_thread *t = self();

	robust_walk(t);
	if (t->clear_tid && put_u32(t->clear_tid, 0) == 0)
		lx_futex_wake((volatile uint32_t *)(uintptr_t)t->clear_tid, 1);
	if (__atomic_sub_fetch(&live, 1, __ATOMIC_SEQ_CST) == 0)
		lx_exit(status);
	t->clear_tid = 0;
	t->robust = 0;
	/* Not reusable until the host has taken the thread off its vCPU (it stores T_IDLE). */
	__atomic_store_n(&t->state, T_EXITING, __ATOMIC_RELEASE);
	mmio_write64(LX_MMIO_THREAD + LX_THREAD_EXIT, (uint64_t)(uintptr_t)&t->state);
	for (;;)
		cpu_relax(); /* never reached: the host runs this thread no more */
}

static long get_robust(int64_t tid, uint64_t head, uint64_t len)
{
	uint64_t l = sizeof(struct robust_list_head);
	const struct lx_thread *t = self();

	if (tid != 0 && tid != t->tid)
		return -EPERM; /* another thread's list: not kept for others */
	if (!lx_user_ok(head, 8) || !lx_user_ok(len, 8))
		return -EFAULT;
	memcpy((void *)(uintptr_t)head, &t->robust, 8);
	memcpy((void *)(uintptr_t)len, &l, 8);
	return 0;
}

long lx_thread_syscall(struct lx_frame *f)
{
	struct lx_thread *t;

	switch (f->nr) {
	case __NR_clone:
		return do_clone(f, f->rdi, f->rsi, f->rdx, f->r10, f->r8);
	case __NR_clone3:
		return do_clone3(f, f->rdi, f->rsi);
	case __NR_gettid:
		return self()->tid;
	case __NR_set_tid_address:
		t = self();
		t->clear_tid = f->rdi;
		return t->tid;
	case __NR_set_robust_list:
		if (f->rsi != sizeof(struct robust_list_head))
			return -EINVAL;
		self()->robust = f->rdi;
		return 0;
	case __NR_get_robust_list:
		return get_robust((int64_t)f->rdi, f->rsi, f->rdx);
	case __NR_exit:
		thread_exit((int)f->rdi);
	case __NR_exit_group:
		lx_exit((int)f->rdi);
	default:
		return LX_ENOSYS_MARK;
	}
}
