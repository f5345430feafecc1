/* The Linux personality's internal declarations (one file per family). */
#ifndef LX_LINUX_H
#define LX_LINUX_H

#include <vmrpc.h>
#include <asm/unistd_64.h>
#include <asm-generic/errno.h>

#include "linux_abi.h"

/* The registers lx_syscall_entry saves, in push order reversed. */
struct lx_frame {
	uint64_t rdi, rsi, rdx, r10, r8, r9, nr, rflags, rip, rsp;
	uint64_t rbx, rbp, r12, r13, r14, r15; /* as the program left them (for clone) */
};

extern const struct vmrpc_linux_info *lx_info;

/* ---- user memory --------------------------------------------------------- */
/* 1 if [addr, addr + len) lies in the program's part of guest memory. */
int lx_user_ok(uint64_t addr, uint64_t len);
/* Copies a NUL-terminated user string; 0 or -EFAULT / -ENAMETOOLONG. */
long lx_user_str(uint64_t addr, char *buf, size_t cap);

/* ---- host calls (host.c) ------------------------------------------------- */
/* How long a host call is awaited spinning before the vCPU halts (us). */
#define LX_HOST_SPIN_US 200u
#define LX_CHUNK 60000u /* data bytes per files RPC, below VMRPC_MAX_PAYLOAD */
int lx_host_init(void);
/*
 * Calls files function fn with six arguments and `len` bytes of data; copies up
 * to `cap` response bytes to `out` and their count to *got.  Returns the host's
 * result (>= 0 or -errno), or -EIO if the RPC itself failed.
 */
long lx_host(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, int64_t a3, const void *data,
	     size_t len, void *out, size_t cap, size_t *got);
/* Binds module `name` (version 1.0) into *slot on first use; its handle or < 0. */
int lx_lazy_module(int *slot, const char *name);
/* One call to a module bound on first use whose answer is one int64_t: that
 * answer; -ENOSYS without the module, -EIO for an answer of another size. */
long lx_module_call(int *slot, const char *name, uint32_t fn, const void *req, size_t len);
/* lx_host's native path operations (fastpath.c); -EOPNOTSUPP: ask Python. */
long lx_host_fast(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, const void *data, size_t len,
		  void *out, size_t cap, size_t *got);
/* Same with a path (and optional second path after its NUL). */
long lx_host_path(uint32_t fn, int64_t a0, int64_t a1, int64_t a2, const char *path,
		  const char *path2, void *out, size_t cap, size_t *got);

/*
 * Moves up to len (<= LX_DATA_MAX) bytes between host handle h and guest
 * memory through the native data plane; -EOPNOTSUPP if it does not serve h.
 */
long lx_host_data(int write, int64_t h, void *buf, uint64_t len, int64_t off);

/* ---- families ------------------------------------------------------------ */
void lx_mem_init(void);
uint64_t lx_mem_mapped_peak(void);
long lx_brk(uint64_t addr);
long lx_mmap(uint64_t addr, uint64_t len, int prot, int flags, int fd, int64_t off);
long lx_munmap(uint64_t addr, uint64_t len);
long lx_mremap(uint64_t old, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr);
long lx_madvise(uint64_t addr, uint64_t len, int advice);
long lx_mprotect(uint64_t addr, uint64_t len, int prot);

/* ---- page protections (prot.c) and code mapped at run time (code.c) ------- */
#define LX_PROT_READ 1
#define LX_PROT_WRITE 2
#define LX_PROT_EXEC 4
/* Gives [addr, addr + len) (page aligned, user memory) these PROT_* rights. */
long lx_prot_set(uint64_t addr, uint64_t len, int prot);
/* Gives the program's (and its interpreter's) segments their p_flags rights. */
void lx_prot_init_program(void);
/* 1 if the page holding addr is present and writable. */
int lx_prot_writable(uint64_t addr);
/* Asks the host to rewrite the syscall sites of code just mapped; their count. */
long lx_code_rewrite(uint64_t addr, uint64_t len);

void lx_time_init(int64_t wall_ns);
long lx_time_syscall(struct lx_frame *f);

void lx_rand_init(const uint8_t seed[32]);
/* A new key, and the keystream not yet handed out dropped (snapshot.c). */
void lx_rand_reseed(const uint8_t seed[32]);
/* Sends the closes of native handles still batched (fastpath.c). */
void lx_host_fast_flush(void);
/* VMRPC_LINUX_NR_SNAPSHOT: 0 in a VM started from the snapshot, or -errno. */
long lx_snapshot_point(void);
long lx_getrandom(uint64_t buf, uint64_t len, unsigned flags);

void lx_fd_init(void);
long lx_fd_syscall(struct lx_frame *f);
/* Reads `len` bytes at `off` of guest fd `fd` into guest memory (file mmap). */
long lx_fd_pread_into(int fd, void *dst, uint64_t len, int64_t off);
long lx_fs_syscall(struct lx_frame *f);
long lx_misc_syscall(struct lx_frame *f);
long lx_rusage_syscall(struct lx_frame *f);
/* VM RPC for the program (rpc.c, sdk/include/vmrpc/linux_calls.h). */
long lx_rpc_syscall(struct lx_frame *f);

/* Sends the trace record of one call (trace.c). */
void lx_trace(const struct lx_frame *f, long result, uint64_t ns);

/* Ends the program (and the VM) with this status; a forked child ends alone (fork.c). */
_Noreturn void lx_exit(int status);
/* Ends the program as signal sig's default action would (128 + sig for the VM). */
_Noreturn void lx_exit_killed(int sig);

#define LX_ENOSYS_MARK (-100000) /* a family's "not mine" answer */

/* ---- threads (thread.c), futex (futex.c), the personality lock (lock.c) -- */
/* Sets up this vCPU's syscall entry (GS slots); every vCPU, before any call. */
void lx_cpu_setup(void);
long lx_thread_syscall(struct lx_frame *f);
/* 1 if the program has one thread (then nothing blocks on another). */
int lx_threads_alone(void);
/* sched_yield: gives this thread's vCPU to a thread waiting for one; 0. */
long lx_thread_yield(void);
unsigned lx_thread_slot(void); /* the calling thread's, 0 .. LX_MAX_THREADS - 1 */
/* Blocks until *uaddr != val, a wake, or timeout_ns (< 0: none); 0 or -errno. */
long lx_futex_wait(volatile uint32_t *uaddr, uint32_t val, int64_t timeout_ns, uint32_t bitset);
/* Wakes up to n waiters of uaddr (no host exit when nobody waits). */
long lx_futex_wake(volatile uint32_t *uaddr, uint32_t n);
long lx_futex_wake_shared(volatile uint32_t *uaddr, uint32_t n);
/* The same without the waiter count: a vCPU parked for its next thread. */
/* Blocks this vCPU in the host for about ns (a sleep that does not spin). */
long lx_futex_sleep(int64_t ns);
/* TLB (tlb.c): flush here after rights were removed; catch up with others' flushes. */
void lx_tlb_narrowed(void);
void lx_tlb_catch_up(void);
/* Time for futex timeouts (time.c). */
long lx_clock_ns(int64_t clk, int64_t *ns);
long lx_user_timespec(uint64_t addr, int64_t *ns);
/* The personality lock around calls on shared state (lock.c). */
void lx_lock(void);
void lx_unlock(void);
/* Around a wait inside a call: lets other threads' calls run meanwhile. */
int lx_block_begin(void);
void lx_block_end(int held);
/*
 * Guest-local readiness changes (pipes): a counter bumped on each, and a wait
 * for the next one (lock released) when other threads could make it.
 */
void lx_ready_changed(void);
long lx_ready_wait(int64_t timeout_ns);

/* ---- execve (exec.c) ------------------------------------------------------ */
long lx_exec_syscall(struct lx_frame *f);
/* Takes the program's path (AT_EXECFN of the initial stack) for /proc/self/exe. */
void lx_exec_init(uint64_t sp);
/* Replaces "/proc/self/exe" in path (cap bytes) by the program's path; 1 if done. */
int lx_exe_alias(char *path, size_t cap);
/* The program's path, or NULL if not known. */
const char *lx_exe_path(void);
void lx_exec_fork_keep(void);
/* Each family's part of an exec, once the new image is in place. */
void lx_fd_exec(void);      /* close-on-exec fds close */
void lx_misc_exec(void);    /* handlers back to default (ignored stay), no altstack */
void lx_thread_exec(void);  /* no clear-tid word, no robust list */
void lx_mem_exec(void);     /* brk and mmap areas of the new program */
void lx_prot_exec(void);    /* page rights as at start (then lx_prot_init_program) */
/* The lowest address of the personality's heap (the top of the mmap area). */
uint64_t lx_mem_heap_lo(void);
/* Turns the reserved auxv slot of the stack at sp into AT_SYSINFO_EHDR (main.c). */
void lx_offer_vdso(uint64_t sp);
_Noreturn void lx_enter_program(uint64_t entry, uint64_t sp);

/* ---- fork (fork.c): the child runs first, in its parent's memory --------- */
#define LX_FORK_DEPTH 4 /* nested forks (the host keeps up to 8 snapshots) */
/*
 * fork/vfork/clone without CLONE_VM: 0 in the child; the parent's call returns
 * (from lx_fork_exit) once the child has ended.  parent_tid (checked, or 0) gets
 * the child's pid in the parent's memory; child_tid is CLONE_CHILD_SETTID/CLEARTID's.
 */
#define LX_CLONE_CHILD_CLEARTID 0x200000
#define LX_CLONE_CHILD_SETTID 0x1000000
long lx_fork(const struct lx_frame *f, uint64_t flags, uint64_t parent_tid, uint64_t child_tid);
/* wait4, waitid, fork, vfork, getpid, getppid. */
long lx_fork_syscall(struct lx_frame *f);
/* 1 while a forked child runs (its parent is suspended). */
int lx_forked(void);
/* The ends of a forked child: exit status (wait's encoding) -> the parent resumes. */
_Noreturn void lx_fork_exit(int wstatus);
uint32_t lx_pid(void);
/* Adds [addr, addr + len) to the parent's snapshot being built; 0 or -ENOMEM. */
int lx_fork_keep(const volatile void *addr, uint64_t len);
int lx_fork_keep_user(uint64_t addr, uint64_t len);
/* Before a chdir: a child's first one remembers the parent's cwd. */
void lx_fork_cwd_changing(void);
/* Each family's part of a fork: what it keeps for the parent, and the child's end. */
void lx_fd_fork_keep(void);
void lx_fd_fork_hold(void);
void lx_fd_close_all(void);
void lx_mem_fork_keep(uint64_t rsp);
void lx_prot_fork_keep(void);
void lx_misc_fork_keep(void);
void lx_thread_fork_keep(void);
/* The program's VM RPC handles and queues: noted at fork, the child's released at its end. */
void lx_rpc_fork_keep(void);
void lx_rpc_fork_end(void);
/* The child's thread: its tid (= pid) and CLONE_CHILD_CLEARTID word. */
void lx_thread_forked(uint32_t tid, uint64_t clear_tid);
/* A new thread or process id. */
uint32_t lx_new_tid(void);
/* Returns to the program as the syscall in f would: rax, fs base restored. */
_Noreturn void lx_thread_resume(const struct lx_frame *f, uint64_t rax, uint64_t fs);
/* 1 if the program ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT): no zombies. */
int lx_sig_child_ignored(void);

#endif

/* fd table helpers shared by fd.c and fs.c */
#define LX_AT_FDCWD (-100)
/* The host handle behind guest fd `fd`, LX_AT_FDCWD for it, or -EBADF/-ENOTDIR. */
int64_t lx_fd_dir_handle(int64_t fd);
int64_t lx_fd_host(int fd);
/* fcntl's record locks on a host file (fs.c); Linux's command numbers. */
#define F_GETLK 5
#define F_SETLK 6
#define F_SETLKW 7
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
long lx_fs_lock(int64_t fd, int cmd, uint64_t uflock);
/* Installs a new guest fd for host handle h (open flags: O_CLOEXEC etc.). */
long lx_fd_install_host(int64_t h, int flags);

/* ---- sockets (net.c), readiness (wait.c), epoll (epoll.c) ------------------ */
/* New fds over a socket library descriptor / an epoll instance (flags: O_CLOEXEC, O_NONBLOCK). */
long lx_fd_install_sock(int64_t sock, int flags);
long lx_fd_close(int64_t fd);
long lx_fd_install_epoll(int64_t ep, int flags);
/* The socket library descriptor behind fd (-EBADF, -ENOTSOCK); *nonblock its O_NONBLOCK. */
int64_t lx_fd_sock(int fd, int *nonblock);
/* The epoll instance behind fd (-EBADF, -EINVAL). */
int64_t lx_fd_epoll(int fd);
/* Readiness (POLL* bits) of a guest-local fd; 0 for sockets and epoll fds. */
int lx_fd_ready(int fd, int events);
/* Called when the last fd of a socket / epoll instance closes. */
void lx_net_release(int64_t sock);
void lx_epoll_release(int64_t ep);
/* A connect error not yet collected by SO_ERROR (a non-blocking connect), or 0. */
int lx_net_pending_error(int64_t sock);
/*
 * Waits until an entry of set (fds of any kind) is ready or timeout_ms passes
 * (-1: no limit); revents filled in, returns the ready count or -errno.
 */
long lx_wait(struct pollfd *set, uint64_t n, int64_t timeout_ms);
/* lx_wait with other threads alive (wait_threads.c), and the parts of wait.c it shares. */
long lx_wait_threaded(struct pollfd *set, uint64_t n, int64_t timeout_ms);
uint32_t lx_wait_scan(struct pollfd *set, uint64_t n, struct pollfd *socks, uint32_t *index);
long lx_wait_sockets(struct pollfd *set, struct pollfd *socks, const uint32_t *index, uint32_t k,
		     int64_t timeout_ms);
long lx_wait_count(const struct pollfd *set, uint64_t n);
/* 1 if the program ignores or handles sig (so EPIPE does not end it). */
int lx_sig_caught(int sig);
/* Socket calls, and read/write/readv/writev on socket fds (asked before lx_fd_syscall). */
long lx_net_syscall(struct lx_frame *f);
long lx_wait_syscall(struct lx_frame *f);
long lx_epoll_syscall(struct lx_frame *f);
long lx_futex_syscall(struct lx_frame *f);
/* The VM's DNS resolver (dns.c): set up before the first datagram socket; answers queued queries. */
void lx_dns_init(void);
void lx_dns_pump(void);
