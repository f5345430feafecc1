/*
 * execve and execveat (docs/linux.md, "execve").  Everything that can fail
 * for a reason of the caller's is found before anything is torn down, and
 * answered as an errno: the strings (argv, envp: pointer arrays and lengths,
 * checked while copied into the personality's heap, E2BIG past 256 KiB), the
 * file (opened through the files module, so mounts, read-only rules and the
 * audit hook decide on the host file actually opened), `#!` lines (four deep:
 * ELOOP), and on the host (linux_exec, crates/vmm/src/linux/exec.rs) the ELF,
 * its interpreter, the layout and the initial stack.  The host then writes
 * the new image over the old one: the point of no return.  A failure past it
 * ends the process (SIGKILL, as Linux does).  Then the personality resets
 * the process (memory bookkeeping, page rights, close-on-exec fds, signal
 * handlers, the thread's records) and jumps to the new entry.  The pid stays;
 * in a forked child only the child's image is replaced (its parent's memory
 * is on the host, fork.c).
 */
#include "linux.h"

#define PATH_MAX 4096
#define STRINGS_MAX (256u << 10) /* exec.rs MAX_STRINGS: the initial stack's room */
#define COUNT_MAX (32u << 10)    /* exec.rs MAX_COUNT */
#define SCRIPT_DEPTH 4           /* nested #! interpreters, as Linux's BINPRM_MAX_RECURSION */
#define HEAD_SIZE 256            /* bytes of a #! line looked at, as Linux's BINPRM_BUF_SIZE */
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define AT_SYMLINK_NOFOLLOW 0x100
#define AT_EMPTY_PATH 0x1000
#define SIGKILL 9

/* The strings being built: a script's interpreter line first, then the program's. */
struct strings {
	char *buf;
	uint32_t len;
	uint32_t argc, envc;
};

#define AT_NULL 0
#define AT_EXECFN 31

static int exec_handle; /* 0: not bound yet; < 0: the host has no such module */
/* What /proc/self/exe names: the program's path (absolute after an exec). */
static char exe_path[PATH_MAX];

void lx_exec_init(uint64_t sp)
{
	const uint64_t *w = (const uint64_t *)(uintptr_t)sp;

	/* The host wrote this stack: AT_EXECFN is the program's path as given. */
	w += 1 + w[0] + 1;
	while (*w)
		w++;
	for (w++; w[0] != AT_NULL; w += 2)
		if (w[0] == AT_EXECFN && lx_user_str(w[1], exe_path, sizeof(exe_path)) < 0)
			exe_path[0] = 0;
}

int lx_exe_alias(char *path, size_t cap)
{
	size_t n = strlen(exe_path);

	if (!exe_path[0] || strcmp(path, "/proc/self/exe") || n >= cap)
		return 0;
	memcpy(path, exe_path, n + 1);
	return 1;
}

const char *lx_exe_path(void)
{
	return exe_path[0] ? exe_path : NULL;
}

void lx_exec_fork_keep(void)
{
	lx_fork_keep(exe_path, sizeof(exe_path)); /* a child's exec changes it */
}

/* The new /proc/self/exe: `path` (opened from the cwd if relative). */
static void set_exe(const char *path)
{
	size_t got = 0, n = strlen(path);

	if (path[0] != '/') {
		if (lx_host(LXF_GETCWD, 0, 0, 0, 0, NULL, 0, exe_path, sizeof(exe_path) - 1, &got) < 0 ||
		    got + 1 + n >= sizeof(exe_path)) {
			exe_path[0] = 0;
			return;
		}
		exe_path[got < sizeof(exe_path) ? got : sizeof(exe_path) - 1] = 0;
		got = strlen(exe_path);
		if (got && exe_path[got - 1] != '/')
			exe_path[got++] = '/';
	}
	memcpy(exe_path + got, path, n + 1);
}

static long put(struct strings *s, const char *str, size_t n)
{
	if (n + 1 > STRINGS_MAX - s->len)
		return -E2BIG;
	memcpy(s->buf + s->len, str, n);
	s->buf[s->len + n] = 0;
	s->len += (uint32_t)n + 1;
	return 0;
}

/* Copies a user string (checked byte by byte) to the end of the block. */
static long put_user(struct strings *s, uint64_t addr)
{
	long r = lx_user_str(addr, s->buf + s->len, STRINGS_MAX - s->len);

	if (r == -ENAMETOOLONG)
		return -E2BIG; /* the block is full */
	if (r < 0)
		return r;
	s->len += (uint32_t)strlen(s->buf + s->len) + 1;
	return 0;
}

/* Copies a NULL-terminated array of user strings (from index `from`); their count. */
static long put_user_array(struct strings *s, uint64_t arr, uint32_t from)
{
	uint32_t n = 0;

	if (!arr)
		return 0; /* Linux takes a NULL argv or envp as empty */
	for (uint32_t i = 0;; i++) {
		uint64_t p;
		long r;

		if ((arr & 7) || !lx_user_ok(arr + 8ull * i, 8))
			return -EFAULT;
		p = *(const volatile uint64_t *)(uintptr_t)(arr + 8ull * i);
		if (!p)
			return n;
		if (i < from)
			continue;
		if (s->argc + s->envc + n >= COUNT_MAX)
			return -E2BIG;
		r = put_user(s, p);
		if (r < 0)
			return r;
		n++;
	}
}

/*
 * Parses a "#!" head: the interpreter and its one optional argument (the rest
 * of the line, trimmed), as Linux's binfmt_script.  0, or -ENOEXEC.
 */
static long parse_script(char *head, size_t n, char **interp, char **arg)
{
	char *p, *end, *nl = memchr(head, '\n', n);

	if (!nl) {
		if (n == HEAD_SIZE)
			return -ENOEXEC; /* a line too long to be sure of the name */
		nl = head + n;
	}
	*nl = 0;
	for (p = head + 2; *p == ' ' || *p == '\t'; p++)
		;
	if (!*p)
		return -ENOEXEC;
	*interp = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	*arg = NULL;
	if (!*p)
		return 0;
	*p++ = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = 0;
	if (*p)
		*arg = p;
	return 0;
}

/* One call to linux_exec: its int64_t answer, or -errno. */
static long host_call(uint32_t fn, const void *req, size_t len)
{
	return lx_module_call(&exec_handle, LX_EXEC_MODULE, fn, req, len);
}

/* Hands the open file and the strings (argv, envp, then execfn) to the host loader. */
static long host_exec(int64_t handle, const struct strings *s)
{
	struct lx_exec_req req = {
		.handle = handle,
		.strings = (uint64_t)(uintptr_t)s->buf,
		.len = s->len,
		.counts = (uint64_t)s->argc | ((uint64_t)s->envc << 32),
		.limit = lx_mem_heap_lo(),
	};

	return host_call(LXE_EXEC, &req, sizeof(req));
}

/* Ends the process as a failed late exec does on Linux. */
static _Noreturn void exec_failed_late(void)
{
	printf("linux: exec failed after the old image was gone\n");
	lx_exit_killed(SIGKILL);
}

/* The new image is in place: the rest of the process becomes the new program's. */
static _Noreturn void exec_reset(void)
{
	static const uint32_t mxcsr = 0x1f80; /* Linux's initial MXCSR */

	lx_fd_exec();
	lx_misc_exec();
	lx_thread_exec();
	lx_mem_exec();
	lx_prot_exec();
	lx_prot_init_program();
	lx_tlb_narrowed(); /* the old program's page rights are gone */
	lx_offer_vdso(lx_info->sp);
	__asm__ volatile("wrfsbase %0" : : "r"(0ull) : "memory");
	__asm__ volatile("fninit; ldmxcsr %0" : : "m"(mxcsr));
	lx_enter_program(lx_info->entry, lx_info->sp);
}

/*
 * Opens `path` (relative to dir handle dh) and reads its head; the guest fd
 * (close-on-exec) or -errno.
 */
static long open_head(int64_t dh, const char *path, int nofollow, char *head, size_t *got)
{
	/* Read-only: what the files module would refuse to open for reading is refused here. */
	int flags = O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0);
	int64_t h;
	long fd, n;

	h = lx_host_path(LXF_OPENAT, dh, flags, 0, path, NULL, NULL, 0, NULL);
	if (h < 0)
		return h == -EISDIR ? -EACCES : h;
	fd = lx_fd_install_host(h, flags);
	if (fd < 0)
		return fd; /* lx_fd_install_host closed the handle */
	n = host_call(LXE_CHECK, &h, sizeof(h)); /* EACCES before ENOEXEC, as Linux */
	if (n >= 0)
		n = lx_fd_pread_into((int)fd, head, HEAD_SIZE, 0);
	if (n < 0) {
		lx_fd_close(fd);
		return n == -EISDIR || n == -EINVAL ? -EACCES : n;
	}
	*got = (size_t)n;
	return fd;
}

/*
 * fexecve's file: the head of the program open as guest fd `fd`, checked as
 * open_head checks a path. A script gets ENOENT: its interpreter would open
 * /dev/fd/N, which the VM has not (Linux too fails so for a close-on-exec fd).
 */
static long fd_head(int64_t fd, char *head, size_t *got)
{
	int64_t h = fd < 0 || fd > INT32_MAX ? -EBADF : lx_fd_host((int)fd);
	long n;

	if (h < 0)
		return h == -EBADF ? -EBADF : -EACCES; /* a pipe or socket: not a file */
	n = host_call(LXE_CHECK, &h, sizeof(h));
	if (n >= 0)
		n = lx_fd_pread_into((int)fd, head, HEAD_SIZE, 0);
	if (n < 0)
		return n == -EISDIR || n == -EINVAL ? -EACCES : n;
	*got = (size_t)n;
	if (n >= 2 && head[0] == '#' && head[1] == '!')
		return -ENOENT;
	return 0;
}

/* One "#!" line followed: the interpreter and its optional argument. */
struct script {
	char line[HEAD_SIZE + 1];
	char *interp, *arg;
};

static long do_execve(int64_t dirfd, uint64_t upath, uint64_t uargv, uint64_t uenvp, int flags)
{
	static char path[PATH_MAX], orig[PATH_MAX];
	static struct script scripts[SCRIPT_DEPTH + 1];
	struct strings s = {0};
	int64_t dh;
	long r, fd = -1;
	size_t got = 0;
	unsigned depth;

	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	/* Other threads would have to be ended first, as Linux does: not built. */
	if (!lx_threads_alone())
		return -EAGAIN;
	r = lx_user_str(upath, orig, sizeof(orig));
	if (r < 0)
		return r;
	if (!orig[0] && (flags & AT_EMPTY_PATH)) {
		/* execveat(fd, "", AT_EMPTY_PATH): fexecve. */
		r = fd_head(dirfd, scripts[0].line, &got);
		if (r < 0)
			return r;
		fd = dirfd; /* the caller's: never closed here */
		dh = -1;    /* no path: /proc/self/exe unknown */
		depth = 0;
		snprintf(orig, sizeof(orig), "/dev/fd/%d", (int)dirfd); /* Linux's AT_EXECFN */
		goto loaded;
	}
	if (!orig[0])
		return -ENOENT;
	dh = dirfd == LX_AT_FDCWD || orig[0] == '/' ? LX_AT_FDCWD : lx_fd_dir_handle(dirfd);
	if (dh < 0 && dh != LX_AT_FDCWD)
		return dh;
	memcpy(path, orig, sizeof(path));
	lx_exe_alias(path, sizeof(path)); /* busybox runs its applets through it */
	for (depth = 0;; depth++) {
		struct script *sc;

		if (fd >= 0)
			lx_fd_close(fd);
		sc = &scripts[depth];
		fd = open_head(dh, path, (flags & AT_SYMLINK_NOFOLLOW) && depth == 0, sc->line,
			       &got);
		if (fd < 0)
			return fd;
		if (got < 2 || sc->line[0] != '#' || sc->line[1] != '!')
			break;
		if (depth == SCRIPT_DEPTH) {
			r = -ELOOP;
			goto out;
		}
		sc->line[got] = 0;
		r = parse_script(sc->line, got, &sc->interp, &sc->arg);
		if (r < 0)
			goto out;
		if (strlen(sc->interp) >= sizeof(path)) {
			r = -ENAMETOOLONG;
			goto out;
		}
		memcpy(path, sc->interp, strlen(sc->interp) + 1);
		dh = LX_AT_FDCWD; /* the interpreter's path is absolute or from the cwd */
	}
loaded:
	if (got < 4 || memcmp(scripts[depth].line, "\177ELF", 4)) {
		r = -ENOEXEC;
		goto out;
	}
	s.buf = malloc(STRINGS_MAX);
	if (!s.buf) {
		r = -ENOMEM;
		goto out;
	}
	/* argv: the innermost interpreter first (each line's interpreter and
	 * argument replace the argv[0] of the script it runs), then the path the
	 * caller gave, then the caller's argv from argv[1]. */
	for (unsigned i = depth; i-- > 0;) {
		r = put(&s, scripts[i].interp, strlen(scripts[i].interp));
		if (r >= 0 && scripts[i].arg)
			r = put(&s, scripts[i].arg, strlen(scripts[i].arg));
		if (r < 0)
			goto out;
		s.argc += scripts[i].arg ? 2 : 1;
	}
	if (depth) {
		r = put(&s, orig, strlen(orig));
		if (r < 0)
			goto out;
		s.argc++;
	}
	r = put_user_array(&s, uargv, depth ? 1 : 0);
	if (r < 0)
		goto out;
	s.argc += (uint32_t)r;
	r = put_user_array(&s, uenvp, 0);
	if (r < 0)
		goto out;
	s.envc = (uint32_t)r;
	/* AT_EXECFN: the path the caller gave. */
	r = put(&s, orig, strlen(orig));
	if (r < 0)
		goto out;
	r = host_exec(lx_fd_host((int)fd), &s);
	if (r == 0) {
		if (dh == LX_AT_FDCWD)
			set_exe(path);
		else
			exe_path[0] = 0; /* relative to a directory fd: not known here */
		free(s.buf);
		exec_reset();
	}
	if (r > 0)
		exec_failed_late();
out:
	if (fd >= 0 && fd != dirfd)
		lx_fd_close(fd);
	free(s.buf);
	return r;
}

long lx_exec_syscall(struct lx_frame *f)
{
	switch (f->nr) {
	case __NR_execve:
		return do_execve(LX_AT_FDCWD, f->rdi, f->rsi, f->rdx, 0);
	case __NR_execveat:
		return do_execve((int64_t)(int32_t)f->rdi, f->rsi, f->rdx, f->r10, (int)f->r8);
	default:
		return LX_ENOSYS_MARK;
	}
}
