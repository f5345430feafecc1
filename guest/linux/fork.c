/*
 * fork, "child first" (docs/linux.md, "fork").  Program memory is
 * identity-mapped, one address space per VM, so a child cannot run beside its
 * parent.  At fork the parent is suspended: the memory it will need back (its
 * program image and brk area, its mmap pages, its stack from rsp up) and the
 * personality's per-process state (fd table, memory bookkeeping, page tables,
 * signal dispositions, its thread) are copied to the host ("linux_fork",
 * crates/vmm/src/linux/fork.rs); every open file gains a reference.  The child
 * then runs in that same memory, fork returning 0.  When it exits, its fds
 * are closed, the parent's memory and state are written back, its status is
 * kept as a zombie, and the parent's fork returns the child's pid.
 *
 * So a parent never runs while a child lives: wait4/waitid never block (a
 * zombie is there, or there is no child: ECHILD).  A child that waits for its
 * parent (a pipe only the parent would write) gets EDEADLK from the pipe, as
 * any single-threaded wait that nothing can end.
 */
#include "linux.h"

#define LX_FORK_RANGES 1024
#define LX_ZOMBIES 64
#define PATH_MAX 4096
#define WNOHANG 1
#define WUNTRACED 2
#define WEXITED 4
#define WCONTINUED 8
#define WNOWAIT 0x01000000
#define WAIT_IGNORED 0xe0000000u /* __WNOTHREAD, __WALL, __WCLONE */
#define P_ALL 0
#define P_PID 1
#define P_PGID 2
#define SIGCHLD 17
#define CLD_EXITED 1
#define CLD_KILLED 2
#define RUSAGE_SIZE 144
#define SIGINFO_SIZE 128

/* What the parent resumes with. */
struct level {
	struct lx_frame frame;
	uint64_t fs;
	uint64_t parent_tid; /* CLONE_PARENT_SETTID's word, or 0 */
	uint32_t pid, ppid;
	int cwd_saved;
	char cwd[PATH_MAX];
	uint8_t fx[512] __attribute__((aligned(16))); /* fxsave64: x87, MXCSR, xmm0-15 */
};

struct zombie {
	uint32_t pid, ppid;
	int status; /* wait's encoding */
};

static struct level levels[LX_FORK_DEPTH];
static unsigned depth;
static uint32_t cur_pid = 1, cur_ppid;
static struct lx_range ranges[LX_FORK_RANGES];
static unsigned nranges;
static int overflow;
static struct zombie zombies[LX_ZOMBIES];
static unsigned nzombies;
static int fork_handle; /* 0: not bound yet; < 0: the host has no such module */

uint32_t lx_pid(void)
{
	return cur_pid;
}

int lx_forked(void)
{
	return depth > 0;
}

int lx_fork_keep(const volatile void *addr, uint64_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)addr;
	struct lx_range *last = nranges ? &ranges[nranges - 1] : NULL;

	if (!len)
		return 0;
	if (last && last->gva + last->len == a) {
		last->len += len;
		return 0;
	}
	if (nranges == LX_FORK_RANGES) {
		overflow = 1;
		return -ENOMEM;
	}
	ranges[nranges++] = (struct lx_range){a, len};
	return 0;
}

int lx_fork_keep_user(uint64_t addr, uint64_t len)
{
	return lx_fork_keep((const volatile void *)(uintptr_t)addr, len);
}

static long host_call(uint32_t fn, const void *req, size_t len)
{
	return lx_module_call(&fork_handle, LX_FORK_MODULE, fn, req, len);
}

long lx_fork(const struct lx_frame *f, uint64_t flags, uint64_t parent_tid, uint64_t child_tid)
{
	struct level *l;
	uint32_t child;
	long r;

	/* Other threads would keep running in memory the child is about to change. */
	if (!lx_threads_alone() || depth == LX_FORK_DEPTH)
		return -EAGAIN;
	if ((flags & (LX_CLONE_CHILD_SETTID | LX_CLONE_CHILD_CLEARTID)) &&
	    ((child_tid & 3) || !lx_user_ok(child_tid, 4)))
		return -EFAULT;
	nranges = 0;
	overflow = 0;
	lx_fd_fork_keep();
	lx_thread_fork_keep();
	lx_misc_fork_keep();
	lx_prot_fork_keep();
	lx_mem_fork_keep(f->rsp);
	lx_fork_keep(lx_info, sizeof(*lx_info)); /* a child's exec rewrites it */
	lx_exec_fork_keep();
	if (overflow)
		return -ENOMEM;
	r = host_call(LXK_SAVE, ranges, nranges * sizeof(ranges[0]));
	if (r < 0)
		return r == -ENOSYS ? -ENOSYS : -ENOMEM;
	lx_fd_fork_hold(); /* the parent's open files outlive the child's closes */
	lx_rpc_fork_keep();
	l = &levels[depth++];
	l->frame = *f;
	__asm__ volatile("rdfsbase %0" : "=r"(l->fs));
	__asm__ volatile("fxsave64 %0" : "=m"(l->fx));
	l->pid = cur_pid;
	l->ppid = cur_ppid;
	l->cwd_saved = 0;
	l->parent_tid = parent_tid;
	child = lx_new_tid();
	cur_ppid = cur_pid;
	cur_pid = child;
	lx_thread_forked(child, (flags & LX_CLONE_CHILD_CLEARTID) ? child_tid : 0);
	if (flags & LX_CLONE_CHILD_SETTID)
		*(volatile uint32_t *)(uintptr_t)child_tid = child; /* the child's memory only */
	return 0;
}

void lx_fork_cwd_changing(void)
{
	struct level *l;
	size_t got = 0;

	if (!depth || levels[depth - 1].cwd_saved)
		return;
	l = &levels[depth - 1];
	if (lx_host(LXF_GETCWD, 0, 0, 0, 0, NULL, 0, l->cwd, sizeof(l->cwd) - 1, &got) >= 0) {
		l->cwd[got < sizeof(l->cwd) ? got : sizeof(l->cwd) - 1] = 0;
		l->cwd_saved = 1;
	}
}

static void zombie_drop(unsigned i)
{
	zombies[i] = zombies[--nzombies];
}

static void zombie_add(uint32_t pid, uint32_t ppid, int status)
{
	/* Orphans of the child are reaped at once (no init to adopt them). */
	for (unsigned i = 0; i < nzombies;) {
		if (zombies[i].ppid == pid)
			zombie_drop(i);
		else
			i++;
	}
	if (lx_sig_child_ignored())
		return;
	if (nzombies == LX_ZOMBIES) {
		/* Never reaped: the oldest status is forgotten (its wait is ECHILD). */
		memmove(&zombies[0], &zombies[1], (LX_ZOMBIES - 1) * sizeof(zombies[0]));
		nzombies--;
	}
	zombies[nzombies++] = (struct zombie){pid, ppid, status};
}

_Noreturn void lx_fork_exit(int wstatus)
{
	struct level *l = &levels[depth - 1];
	uint32_t child = cur_pid;

	lx_fd_close_all(); /* before the parent's table comes back over it */
	lx_rpc_fork_end();
	if (host_call(LXK_RESTORE, NULL, 0) < 0) {
		printf("linux: the parent of process %u cannot be restored\n", child);
		exit(127);
	}
	lx_tlb_narrowed(); /* the child's page rights are gone */
	if (l->cwd_saved)
		lx_host_path(LXF_CHDIR, LX_AT_FDCWD, 0, 0, l->cwd, NULL, NULL, 0, NULL);
	depth--;
	cur_pid = l->pid;
	cur_ppid = l->ppid;
	zombie_add(child, cur_pid, wstatus);
	if (l->parent_tid)
		*(volatile uint32_t *)(uintptr_t)l->parent_tid = child; /* checked at fork */
	__asm__ volatile("fxrstor64 %0" : : "m"(l->fx));
	lx_thread_resume(&l->frame, child, l->fs);
}

static struct zombie *zombie_find(int64_t pid)
{
	for (unsigned i = 0; i < nzombies; i++) {
		if (zombies[i].ppid != cur_pid)
			continue;
		if (pid <= 0 || zombies[i].pid == (uint64_t)pid)
			return &zombies[i]; /* one process group: 0 and -pgid match any */
	}
	return NULL;
}

static long do_wait4(int64_t pid, uint64_t wstatus, uint64_t options, uint64_t rusage)
{
	struct zombie *z;
	long r;

	if (options & ~(uint64_t)(WNOHANG | WUNTRACED | WCONTINUED | WAIT_IGNORED))
		return -EINVAL;
	/* The parent only runs once its children have ended: no wait ever blocks. */
	z = zombie_find(pid);
	if (!z)
		return -ECHILD;
	r = z->pid;
	/* As Linux: the child is reaped, then a status or rusage it cannot store is EFAULT. */
	if ((wstatus && ((wstatus & 3) || !lx_user_ok(wstatus, 4))) ||
	    (rusage && !lx_user_ok(rusage, RUSAGE_SIZE)))
		r = -EFAULT;
	else if (wstatus)
		*(volatile int *)(uintptr_t)wstatus = z->status;
	if (rusage && r > 0)
		memset((void *)(uintptr_t)rusage, 0, RUSAGE_SIZE);
	zombie_drop((unsigned)(z - zombies));
	return r;
}

static long do_waitid(int type, int64_t id, uint64_t infop, uint64_t options, uint64_t rusage)
{
	struct zombie *z;
	int32_t *si;

	if (options & ~(uint64_t)(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT |
				  WAIT_IGNORED))
		return -EINVAL;
	if (!(options & (WUNTRACED | WEXITED | WCONTINUED)))
		return -EINVAL;
	if (type != P_ALL && type != P_PID && type != P_PGID)
		return -EINVAL;
	if ((type == P_PID && id <= 0) || id < 0)
		return -EINVAL;
	if ((infop && ((infop & 3) || !lx_user_ok(infop, SIGINFO_SIZE))) ||
	    (rusage && !lx_user_ok(rusage, RUSAGE_SIZE)))
		return -EFAULT;
	z = (options & WEXITED) ? zombie_find(type == P_PID ? id : -1) : NULL;
	if (!z)
		return -ECHILD;
	if (infop) {
		si = (int32_t *)(uintptr_t)infop;
		memset(si, 0, SIGINFO_SIZE);
		si[0] = SIGCHLD;
		si[2] = (z->status & 0x7f) ? CLD_KILLED : CLD_EXITED;
		si[4] = (int32_t)z->pid;
		si[5] = (int32_t)lx_info->uid;
		si[6] = (z->status & 0x7f) ? (z->status & 0x7f) : (z->status >> 8) & 0xff;
	}
	if (rusage)
		memset((void *)(uintptr_t)rusage, 0, RUSAGE_SIZE);
	if (!(options & WNOWAIT))
		zombie_drop((unsigned)(z - zombies));
	return 0;
}

long lx_fork_syscall(struct lx_frame *f)
{
	switch (f->nr) {
	case __NR_fork:
	case __NR_vfork: /* served as fork: the child cannot run beside its parent anyway */
		return lx_fork(f, 0, 0, 0);
	case __NR_wait4:
		return do_wait4((int64_t)(int32_t)f->rdi, f->rsi, f->rdx & 0xffffffffu, f->r10);
	case __NR_waitid:
		return do_waitid((int)f->rdi, (int64_t)(int32_t)f->rsi, f->rdx,
				 f->r10 & 0xffffffffu, f->r8);
	case __NR_getpid:
		return cur_pid;
	case __NR_getppid:
		return cur_ppid;
	default:
		return LX_ENOSYS_MARK;
	}
}
