/*
 * The Linux personality: a vmrpc guest image that runs one unmodified static
 * Linux program in ring 3 and serves its system calls.  The host loaded the
 * program and described it in struct vmrpc_linux_info (see linux_abi.h).
 */
#include "linux.h"

const struct vmrpc_linux_info *lx_info;

int lx_user_ok(uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;

	if (!len)
		return 1; /* nothing is accessed (musl passes {NULL, 0} iovecs) */
	return addr >= LX_PROGRAM_MIN && end >= addr && end <= rt_boot_info()->shared_base;
}

long lx_user_str(uint64_t addr, char *buf, size_t cap)
{
	size_t i;

	for (i = 0; i < cap; i++) {
		if (!lx_user_ok(addr + i, 1))
			return -EFAULT;
		buf[i] = *(const char *)(uintptr_t)(addr + i);
		if (!buf[i])
			return 0;
	}
	return -ENAMETOOLONG;
}

/*
 * A program beside others in one VM (boot info arena_base): its fds close at its
 * end, as a Linux process's do, so a peer in another program sees EOF on a
 * connection instead of waiting for ever, and its listeners are withdrawn
 * (lib/sockets/arena.c).  Alone in its VM, nothing outlives the VM: skipped.
 */
static void close_for_others(void)
{
	if (rt_boot_info()->arena_base)
		lx_fd_close_all();
}

_Noreturn void lx_exit(int status)
{
	if (lx_forked())
		lx_fork_exit((status & 0xff) << 8); /* its parent resumes */
	close_for_others();
	exit(status & 0xff);
}

_Noreturn void lx_exit_killed(int sig)
{
	if (lx_forked())
		lx_fork_exit(sig & 0x7f);
	close_for_others();
	exit((128 + sig) & 0xff);
}

/*
 * Offers the program the vDSO: the host reserved an auxv entry (AT_IGNORE with
 * LX_AUXV_VDSO_SLOT, crates/vmm/src/linux/stack.rs) that becomes
 * AT_SYSINFO_EHDR, so libc reads the clocks without a system call.
 */
void lx_offer_vdso(uint64_t sp)
{
	extern char lx_vdso_image[];
	uint64_t *w = (uint64_t *)(uintptr_t)sp;

	w += 1 + w[0] + 1; /* argc, argv[], NULL */
	while (*w)
		w++; /* envp[] */
	for (w++; w[0] != LX_AT_NULL; w += 2) {
		if (w[0] == LX_AT_IGNORE && w[1] == LX_AUXV_VDSO_SLOT) {
			w[0] = LX_AT_SYSINFO_EHDR;
			w[1] = (uint64_t)(uintptr_t)lx_vdso_image;
			return;
		}
	}
}

int main(int argc, char **argv)
{
	extern char _end[];
	int64_t wall = 0;
	long h;

	(void)argc;
	(void)argv;
	lx_info = (const struct vmrpc_linux_info *)(uintptr_t)LX_INFO_GPA;
	if (lx_info->magic != LX_INFO_MAGIC) {
		printf("linux: no program was loaded (run it with vmrpc.LinuxVM)\n");
		return 125;
	}
	if ((uint64_t)(uintptr_t)_end > LX_PROGRAM_MIN) {
		printf("linux: the personality image reaches the program area\n");
		return 125;
	}
	/* A file call costs the host tens of microseconds of Python: wait for it
	 * spinning rather than through the halt gate (ring 0, emulated by PVM). */
	vmrpc_set_spin_us(LX_HOST_SPIN_US);
	/* After the spin, a thread waits for its answer in the host, its vCPU
	 * lent to other threads (rpc::wait), not in the ring-0 halt gate. */
	vmrpc_set_wait_in_host(1);
	h = lx_host_init();
	if (h <= 0) {
		printf("linux: cannot bind the files host module: %s\n", vmrpc_strerror((int)h));
		return 125;
	}
	wall = lx_host(LXF_HELLO, 0, 0, 0, 0, NULL, 0, NULL, 0, NULL);
	lx_time_init(wall > 0 ? wall : 0);
	lx_offer_vdso(lx_info->sp);
	lx_exec_init(lx_info->sp);
	lx_rand_init(lx_info->seed);
	lx_mem_init();
	lx_prot_init_program();
	lx_fd_init();
	lx_cpu_setup(); /* the main thread's syscall stack and GS words (thread.c) */
	lx_enter_program(lx_info->entry, lx_info->sp);
}
