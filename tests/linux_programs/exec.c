/*
 * execve as Linux does it, checked by tests/test_linux_exec.py natively and in a
 * LinuxVM (same output expected).  Usage: exec SELF [DYNAMIC]: SELF is this
 * program's path as the running system sees it (the guest path in a VM),
 * DYNAMIC a dynamically linked program (e.g. /usr/bin/env) to run from a
 * forked child.
 *
 * Before exec: bad pointers (EFAULT), a missing file (ENOENT), a 300 KB
 * argument (E2BIG), a directory
 * (SELF's, EACCES), a forked child exec'ing DYNAMIC; then SELF is exec'd with other
 * arguments and environment, a pipe without O_CLOEXEC (with bytes in it) and one
 * with, a handled and an ignored signal.  The new image reports what it got.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void on_usr1(int sig)
{
	(void)sig;
}

/* execve through the system call itself: libc wrappers may check pointers first. */
static long raw_execve(const void *path, const void *argv, const void *envp)
{
	long r = syscall(SYS_execve, path, argv, envp);

	return r < 0 ? -errno : r;
}

static const char *disposition(int sig)
{
	struct sigaction sa;

	if (sigaction(sig, NULL, &sa) != 0)
		return "error";
	if (sa.sa_handler == SIG_DFL)
		return "default";
	if (sa.sa_handler == SIG_IGN)
		return "ignored";
	return "handled";
}

static int child(int argc, char **argv)
{
	int keep = atoi(argv[2]), gone = atoi(argv[3]);
	char buf[16] = {0};
	int n = 0;

	printf("new image: argc %d:", argc);
	for (int i = 1; i < argc; i++)
		if (i != 2 && i != 3 && i != 4) /* fd numbers and pid differ between runs */
			printf(" %s", argv[i]);
	printf("\n");
	for (char **e = environ; *e; e++)
		n++;
	printf("environment: %d entries, GREETING=%s\n", n, getenv("GREETING"));
	printf("pid kept: %s\n", atoi(argv[4]) == getpid() ? "yes" : "no");
	printf("fd without O_CLOEXEC: %s\n", fcntl(keep, F_GETFD) >= 0 ? "open" : "closed");
	if (read(keep, buf, sizeof(buf) - 1) > 0)
		printf("its bytes: %s\n", buf);
	printf("fd with O_CLOEXEC: %s\n",
	       fcntl(gone, F_GETFD) < 0 && errno == EBADF ? "closed" : "open");
	printf("SIGUSR1 %s, SIGUSR2 %s\n", disposition(SIGUSR1), disposition(SIGUSR2));
	return 3;
}

int main(int argc, char **argv)
{
	static char *bad_arg[] = {"exec", (char *)8, NULL};
	static char huge[300000];
	char *huge_argv[] = {"exec", huge, NULL};
	char *args[8], *env[] = {"GREETING=hello", "B=2", NULL};
	char keep_s[16], gone_s[16], pid_s[16], dir[4096];
	int keep[2], gone[2], status;
	pid_t pid;

	if (argc >= 5 && !strcmp(argv[1], "child"))
		return child(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: exec SELF [DYNAMIC]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("bad path: %ld\n", raw_execve((void *)8, argv, environ));
	printf("bad argv array: %ld\n", raw_execve(argv[1], (void *)8, environ));
	printf("bad argv string: %ld\n", raw_execve(argv[1], bad_arg, environ));
	printf("bad envp array: %ld\n", raw_execve(argv[1], argv, (void *)16));
	printf("missing: %ld\n", raw_execve("/no/such/program", argv, environ));
	/* Past Linux's 128 KiB per string and the VM's 256 KiB in all. */
	memset(huge, 'x', sizeof(huge) - 1);
	printf("huge argument: %ld\n", raw_execve(argv[1], huge_argv, environ));
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = 0; /* SELF's directory */
	printf("directory: %ld\n", raw_execve(dir, argv, environ));
	if (argc > 2) {
		pid = fork();
		if (pid == 0) {
			char *dyn_argv[] = {"env", NULL}, *dyn_env[] = {"X=1", NULL};

			execve(argv[2], dyn_argv, dyn_env);
			_exit(99);
		}
		waitpid(pid, &status, 0);
		printf("dynamic program exited %d\n", WEXITSTATUS(status));
	}
	if (pipe2(keep, 0) != 0 || pipe2(gone, O_CLOEXEC) != 0)
		return 1;
	if (write(keep[1], "kept", 4) != 4)
		return 1;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, SIG_IGN);
	snprintf(keep_s, sizeof(keep_s), "%d", keep[0]);
	snprintf(gone_s, sizeof(gone_s), "%d", gone[0]);
	snprintf(pid_s, sizeof(pid_s), "%d", (int)getpid());
	args[0] = "exec";
	args[1] = "child";
	args[2] = keep_s;
	args[3] = gone_s;
	args[4] = pid_s;
	args[5] = "two words";
	args[6] = "";
	args[7] = NULL;
	execve(argv[1], args, env);
	printf("execve failed: %s\n", strerror(errno));
	return 1;
}
