/*
 * Memory calls (routing to mem.c), process identity and setup, signals
 * (recorded only), randomness, scheduling and exit.
 */
#include "linux.h"

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004
#define LX_PGID 1 /* one process group and session: the first process's */
#define NSIG 64
#define SIGKILL 9
#define SIGSTOP 19
#define SIGCHLD 17
#define SIG_IGN 1
#define SA_NOCLDWAIT 2
#define RLIMIT_STACK 3
#define RLIMIT_NOFILE 7
#define RLIM_NLIMITS 16
#define RLIM_INFINITY (~0ull)

struct k_sigaction {
	uint64_t handler, flags, restorer, mask;
};
struct rlimit64 {
	uint64_t cur, max;
};

static struct k_sigaction actions[NSIG + 1];
static uint64_t sigmask;
static uint8_t altstack[24];
static uint64_t umask_value = 022;

static long copy_out(uint64_t dst, const void *src, uint64_t n)
{
	if (!lx_user_ok(dst, n))
		return -EFAULT;
	memcpy((void *)(uintptr_t)dst, src, n);
	return 0;
}

static long copy_in(void *dst, uint64_t src, uint64_t n)
{
	if (!lx_user_ok(src, n))
		return -EFAULT;
	memcpy(dst, (const void *)(uintptr_t)src, n);
	return 0;
}

static long do_arch_prctl(int code, uint64_t addr)
{
	uint64_t v;

	switch (code) {
	case ARCH_SET_FS:
		/* wrfsbase works in ring 3 here whatever CR4.FSGSBASE says (docs/linux.md). */
		__asm__ volatile("wrfsbase %0" : : "r"(addr) : "memory");
		return 0;
	case ARCH_GET_FS:
		__asm__ volatile("rdfsbase %0" : "=r"(v));
		return copy_out(addr, &v, 8);
	case ARCH_SET_GS:
	case ARCH_GET_GS:
		return -EPERM; /* GS belongs to the personality (per-vCPU data) */
	default:
		return -EINVAL;
	}
}

static long do_sigaction(int sig, uint64_t act, uint64_t old, uint64_t size)
{
	struct k_sigaction a;

	if (sig < 1 || sig > NSIG || size != 8)
		return -EINVAL;
	if (act && (sig == SIGKILL || sig == SIGSTOP))
		return -EINVAL;
	if (act && copy_in(&a, act, sizeof(a)) < 0)
		return -EFAULT;
	if (old && copy_out(old, &actions[sig], sizeof(a)) < 0)
		return -EFAULT;
	if (act)
		actions[sig] = a;
	return 0;
}

static long do_sigprocmask(int how, uint64_t set, uint64_t old, uint64_t size)
{
	uint64_t s;

	if (size != 8)
		return -EINVAL;
	if (old && copy_out(old, &sigmask, 8) < 0)
		return -EFAULT;
	if (!set)
		return 0;
	if (copy_in(&s, set, 8) < 0)
		return -EFAULT;
	s &= ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
	switch (how) {
	case 0:
		sigmask |= s;
		return 0;
	case 1:
		sigmask &= ~s;
		return 0;
	case 2:
		sigmask = s;
		return 0;
	default:
		return -EINVAL;
	}
}

static long do_prlimit(int64_t pid, unsigned res, uint64_t new, uint64_t old)
{
	struct rlimit64 r = {RLIM_INFINITY, RLIM_INFINITY};

	if (pid != 0 && pid != lx_pid())
		return -ESRCH;
	if (res >= RLIM_NLIMITS)
		return -EINVAL;
	if (res == RLIMIT_STACK)
		r.cur = 8ull << 20;
	if (res == RLIMIT_NOFILE)
		r.cur = r.max = 256;
	if (old && copy_out(old, &r, sizeof(r)) < 0)
		return -EFAULT;
	(void)new; /* limits are fixed; setting one is accepted and ignored */
	return 0;
}

static long do_uname(uint64_t buf)
{
	static const char *fields[6] = {"Linux", "vmrpc", "6.1.0-vmrpc", "#1 vmrpc personality",
					"x86_64", "(none)"};
	char u[6][65];

	memset(u, 0, sizeof(u));
	for (int i = 0; i < 6; i++)
		strcpy(u[i], fields[i]);
	return copy_out(buf, u, sizeof(u));
}

static long do_affinity(int64_t pid, uint64_t len, uint64_t mask)
{
	uint64_t one = 1; /* the program runs on one vCPU */

	if (pid != 0 && pid != lx_pid())
		return -ESRCH;
	if (len < 8 || (len & 7))
		return -EINVAL;
	if (!lx_user_ok(mask, len))
		return -EFAULT;
	memset((void *)(uintptr_t)mask, 0, len);
	memcpy((void *)(uintptr_t)mask, &one, 8);
	return 8;
}

/* struct sysinfo: uptime, loads, memory in units of 1 byte, one process. */
static long do_sysinfo(uint64_t addr)
{
	struct {
		int64_t uptime;
		uint64_t loads[3], totalram, freeram, sharedram, bufferram, totalswap, freeswap;
		uint16_t procs, pad;
		uint64_t totalhigh, freehigh;
		uint32_t mem_unit;
		char pad2[4];
	} si;

	memset(&si, 0, sizeof(si));
	si.uptime = (int64_t)(rt_ns_from_tsc(rdtsc()) / 1000000000u);
	si.totalram = lx_info->mmap_hi - lx_info->brk_start;
	si.freeram = si.totalram / 2;
	si.procs = 1;
	si.mem_unit = 1;
	return copy_out(addr, &si, sizeof(si));
}

static char task_name[16] = "program";

static long do_prctl(int op, uint64_t arg)
{
	switch (op) {
	case 15: /* PR_SET_NAME */
		if (!lx_user_ok(arg, 1))
			return -EFAULT;
		for (int i = 0; i < 15; i++) {
			if (!lx_user_ok(arg + (uint64_t)i, 1))
				return -EFAULT;
			task_name[i] = *(const char *)(uintptr_t)(arg + (uint64_t)i);
			if (!task_name[i])
				break;
		}
		task_name[15] = 0;
		return 0;
	case 16: /* PR_GET_NAME */
		return copy_out(arg, task_name, sizeof(task_name));
	default:
		return -EINVAL;
	}
}

int lx_sig_caught(int sig)
{
	if (sig < 1 || sig > NSIG)
		return 0;
	/* Ignored, handled (recorded, not delivered) or blocked: not a default death. */
	return actions[sig].handler != 0 || ((sigmask >> (sig - 1)) & 1);
}

int lx_sig_child_ignored(void)
{
	return actions[SIGCHLD].handler == SIG_IGN || (actions[SIGCHLD].flags & SA_NOCLDWAIT);
}

/* A forked child's changes to these are not its parent's (fork.c). */
void lx_misc_fork_keep(void)
{
	lx_fork_keep(actions, sizeof(actions));
	lx_fork_keep(&sigmask, sizeof(sigmask));
	lx_fork_keep(altstack, sizeof(altstack));
	lx_fork_keep(&umask_value, sizeof(umask_value));
	lx_fork_keep(task_name, sizeof(task_name));
}

/* exec: handlers go back to the default action, ignored signals stay ignored,
 * the mask stays, and the alternate stack is gone (as Linux). */
void lx_misc_exec(void)
{
	for (int sig = 1; sig <= NSIG; sig++)
		if (actions[sig].handler != SIG_IGN)
			memset(&actions[sig], 0, sizeof(actions[sig]));
	memset(altstack, 0, sizeof(altstack));
}

static long kill_self(int64_t pid, int sig)
{
	if (pid != lx_pid() && pid != 0 && pid != -1)
		return -ESRCH;
	if (sig == 0)
		return 0;
	if (sig < 1 || sig > NSIG)
		return -EINVAL;
	/* Signal delivery is not in part 1: a signal to itself ends the program
	 * the way the default action would (the shell's 128 + signal). */
	lx_exit_killed(sig);
}

long lx_misc_syscall(struct lx_frame *f)
{
	switch (f->nr) {
	case __NR_brk:
		return lx_brk(f->rdi);
	case __NR_mmap:
		return lx_mmap(f->rdi, f->rsi, (int)f->rdx, (int)f->r10, (int)f->r8, (int64_t)f->r9);
	case __NR_munmap:
		return lx_munmap(f->rdi, f->rsi);
	case __NR_mremap:
		return lx_mremap(f->rdi, f->rsi, f->rdx, (int)f->r10, f->r8);
	case __NR_mprotect:
		return lx_mprotect(f->rdi, f->rsi, (int)f->rdx);
	case __NR_madvise:
		return lx_madvise(f->rdi, f->rsi, (int)f->rdx);
	case __NR_arch_prctl:
		return do_arch_prctl((int)f->rdi, f->rsi);
	case __NR_rseq:
		return -ENOSYS; /* glibc then does without */
	case __NR_prlimit64:
		return do_prlimit((int64_t)f->rdi, (unsigned)f->rsi, f->rdx, f->r10);
	case __NR_getrlimit:
		return do_prlimit(0, (unsigned)f->rdi, 0, f->rsi);
	case __NR_setrlimit:
		return 0;
	case __NR_uname:
		return do_uname(f->rdi);
	case __NR_getpgrp:
	case __NR_getsid:
	case __NR_getpgid:
		return LX_PGID; /* getpid, getppid: fork.c */
	case __NR_setpgid:
	case __NR_setsid:
		return f->nr == __NR_setsid ? -EPERM : 0;
	case __NR_getuid:
	case __NR_geteuid:
		return lx_info->uid;
	case __NR_getgid:
	case __NR_getegid:
		return lx_info->gid;
	case __NR_getgroups:
		return 0;
	case __NR_umask: {
		uint64_t old = umask_value;
		umask_value = f->rdi & 0777;
		return (long)old;
	}
	case __NR_sched_yield:
		return lx_thread_yield();
	case __NR_sched_getaffinity:
		return do_affinity((int64_t)f->rdi, f->rsi, f->rdx);
	case __NR_getrandom:
		return lx_getrandom(f->rdi, f->rsi, (unsigned)f->rdx);
	case __NR_rt_sigaction:
		return do_sigaction((int)f->rdi, f->rsi, f->rdx, f->r10);
	case __NR_rt_sigprocmask:
		return do_sigprocmask((int)f->rdi, f->rsi, f->rdx, f->r10);
	case __NR_sigaltstack:
		if (f->rsi && copy_out(f->rsi, altstack, sizeof(altstack)) < 0)
			return -EFAULT;
		if (f->rdi && copy_in(altstack, f->rdi, sizeof(altstack)) < 0)
			return -EFAULT;
		return 0;
	case __NR_sysinfo:
		return do_sysinfo(f->rdi);
	case __NR_prctl:
		return do_prctl((int)f->rdi, f->rsi);
	case __NR_kill:
		return kill_self((int64_t)(int32_t)f->rdi, (int)f->rsi);
	case __NR_tkill:
		return kill_self(lx_pid(), (int)f->rsi);
	case __NR_tgkill:
		return kill_self((int64_t)(int32_t)f->rdi, (int)f->rdx);
	default:
		return LX_ENOSYS_MARK;
	}
}
