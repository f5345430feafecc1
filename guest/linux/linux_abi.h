/*
 * The Linux personality's contract with the host (crates/vmm/src/linux/setup.rs
 * and python/vmrpc/linux/files.py).  Both sides assert the sizes below.
 */
#ifndef VMRPC_LINUX_ABI_H
#define VMRPC_LINUX_ABI_H

/* Where the host writes struct vmrpc_linux_info. */
#define LX_INFO_GPA 0x8000ull
#define LX_INFO_MAGIC 0x58554e494c524d56ull /* "VMRLINUX" little-endian */
#define LX_FLAG_TRACE 1ull
#define LX_FLAG_REWRITE 2ull /* the host rewrites syscall sites (also of code mapped later) */
/* Programs load at or above this address; the personality lives below. */
#define LX_PROGRAM_MIN 0x400000ull

/* The auxv entry the host reserves for the vDSO (stack.rs VDSO_SLOT): AT_IGNORE
 * with this value, which the personality turns into AT_SYSINFO_EHDR. */
#define LX_AT_NULL 0
#define LX_AT_IGNORE 1
#define LX_AT_SYSINFO_EHDR 33
#define LX_AUXV_VDSO_SLOT 0x6f7364762d786cull /* "lx-vdso" */

/*
 * Per-thread GS block words beyond the runtime's first 16 bytes (the host
 * writes the vCPU index at 0 whenever it loads the thread on a vCPU).  64
 * bytes: the main thread's is vCPU 0's page, the others' in thread.c.
 */
#define LX_GS_USER_RSP 0x10 /* the program's rsp while a syscall runs */
#define LX_GS_STACK 0x18    /* top of this thread's syscall stack */
#define LX_GS_HANDLER 0x20  /* the host's LSTAR trampoline jumps through this */
#define LX_GS_ZPOLINE 0x28  /* the page-0 sled of rewritten sites jumps through this */
/* Non-zero while the thread runs personality code, which may hold the
 * personality lock or use per-vCPU state (the TLB generation): the host
 * preempts only threads where it is 0 (crates/vmm/src/vm/pool.rs
 * GS_IN_PERSONALITY). */
#define LX_GS_IN_PERSONALITY 0x30
#define LX_GS_SLOT 0x34 /* the thread's slot in thread.c */
#define LX_MAX_THREADS 64

#ifndef __ASSEMBLER__
#include <stdint.h>

struct vmrpc_linux_info {
	uint64_t magic;
	uint64_t entry;     /* the program's entry point */
	uint64_t sp;        /* its initial stack (argc, argv, envp, auxv) */
	uint64_t brk_start; /* first byte after the program */
	uint64_t brk_max;
	uint64_t mmap_lo;   /* anonymous and file mappings go in [mmap_lo, mmap_hi) */
	uint64_t mmap_hi;   /* == bottom of the program's stack */
	uint64_t flags;     /* LX_FLAG_* */
	uint32_t uid, gid;
	uint8_t seed[32];   /* host entropy for getrandom */
};
_Static_assert(sizeof(struct vmrpc_linux_info) == 104, "agrees with setup.rs");

/*
 * The "files" host module.  A request is struct lx_req (six signed 64-bit
 * arguments) followed by bytes (paths NUL-terminated, data); a response is one
 * signed 64-bit result (>= 0, or -errno) followed by bytes.
 */
#define LX_FILES_MODULE "files"
enum lx_files_fn {
	LXF_HELLO = 0,      /* -> wall clock in ns since the epoch */
	LXF_OPENAT = 1,     /* dirh, flags, mode; path -> handle */
	LXF_CLOSE = 2,      /* h */
	LXF_READ = 3,       /* h, count -> data */
	LXF_WRITE = 4,      /* h; data -> count */
	LXF_PREAD = 5,      /* h, count, offset -> data */
	LXF_PWRITE = 6,     /* h, offset; data -> count */
	LXF_LSEEK = 7,      /* h, offset, whence -> offset */
	LXF_FSTAT = 8,      /* h -> struct stat */
	LXF_FSTATAT = 9,    /* dirh, flags; path -> struct stat */
	LXF_GETDENTS = 10,  /* h, count -> linux_dirent64 records */
	LXF_READLINKAT = 11,/* dirh, bufsize; path -> target */
	LXF_FACCESSAT = 12, /* dirh, mode, flags; path */
	LXF_UNLINKAT = 13,  /* dirh, flags; path */
	LXF_MKDIRAT = 14,   /* dirh, mode; path */
	LXF_RENAMEAT = 15,  /* olddirh, newdirh, flags; old NUL new NUL */
	LXF_FTRUNCATE = 16, /* h, length */
	LXF_FSYNC = 17,     /* h */
	LXF_GETCWD = 18,    /* -> path */
	LXF_CHDIR = 19,     /* h (>= 0: fchdir) or -1; path */
	LXF_STATX = 20,     /* dirh, flags, mask; path -> struct statx */
	LXF_ENOSYS = 21,    /* nr: an unsupported call was made */
	LXF_TRACE = 22,     /* nr, ret, ns, a0; a1..a5, then its paths (NUL-terminated) */
	LXF_LOCK = 23,      /* h, fcntl cmd; struct flock -> struct flock */
};

/*
 * The "files_data" host module (crates/vmm/src/linux/dataplane.rs): reads and
 * writes of regular files straight between the host file and guest memory.
 * Request: struct lx_data_req; answer: one int64_t (bytes, or -errno;
 * -EOPNOTSUPP: this handle is not served natively, ask "files").
 */
#define LX_FILES_DATA_MODULE "files_data"
#define LX_DATA_MAX (16u << 20) /* bytes per call */
enum lx_files_data_fn {
	LXD_READ = 0,
	LXD_WRITE = 1,
};

struct lx_data_req {
	int64_t handle;
	uint64_t gpa;
	uint64_t len;
	int64_t offset; /* -1: at (and advancing) the file position */
};
_Static_assert(sizeof(struct lx_data_req) == 32, "agrees with dataplane.rs");

/*
 * A range of guest memory, as the linux_code and linux_fork modules read it
 * (code.rs and fork.rs: guest address, length; 16 bytes).
 */
struct lx_range {
	uint64_t gva; /* identity-mapped: also the guest-physical address */
	uint64_t len;
};
_Static_assert(sizeof(struct lx_range) == 16, "agrees with code.rs and fork.rs");

/*
 * The "linux_code" host module (crates/vmm/src/linux/code.rs): rewrites the
 * syscall sites of code the program maps executable at run time (ld.so
 * loading shared libraries).  Request: one struct lx_range; answer: one
 * int64_t (sites rewritten, or -errno).
 */
#define LX_CODE_MODULE "linux_code"
enum lx_code_fn {
	LXC_REWRITE = 0,
};

/*
 * The "linux_fork" host module (crates/vmm/src/linux/fork.rs): keeps a forked
 * parent's memory while its child runs.  SAVE: an array of struct
 * lx_range (at most 2048) copied into a new host snapshot; RESTORE: the
 * newest snapshot written back and dropped.  Answer: one int64_t (0 or -errno).
 */
#define LX_FORK_MODULE "linux_fork"
enum lx_fork_fn {
	LXK_SAVE = 0,
	LXK_RESTORE = 1,
};

/*
 * The "linux_exec" host module (crates/vmm/src/linux/exec.rs): loads the
 * program behind an open file's handle over the running one (execve).  The
 * strings block holds argv, envp and then AT_EXECFN, each NUL-terminated.
 * Answer: one int64_t: 0 (the new image and info block are in place), -errno
 * (nothing changed), or LX_EXEC_LATE (memory was being replaced: end the process).
 */
#define LX_EXEC_MODULE "linux_exec"
#define LX_EXEC_LATE 1
enum lx_exec_fn {
	LXE_EXEC = 0,
	LXE_CHECK = 1, /* int64_t handle: 0, or -EACCES if not an executable regular file */
};

struct lx_exec_req {
	int64_t handle;   /* the program file's files handle (a regular file) */
	uint64_t strings; /* guest address of the strings block */
	uint64_t len;     /* its length */
	uint64_t counts;  /* argc | envc << 32 */
	uint64_t limit;   /* the new mmap area must end below this (the personality's heap) */
	uint64_t reserved;
};
_Static_assert(sizeof(struct lx_exec_req) == 48, "agrees with exec.rs");

struct lx_req {
	int64_t a[6];
};
#endif

#endif /* VMRPC_LINUX_ABI_H */
