/*
 * fork as a program sees it (tests/test_linux_fork.py): the same binary runs
 * natively and in the VM and must print the same lines.  Only the parent
 * prints; children talk through a pipe and their exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int in_data = 1;
static int in_bss;

static int child_exit_status(pid_t pid)
{
	int st = 0;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

int main(void)
{
	volatile int on_stack = 1;
	int *heap = malloc(64 * 1024);
	char *map = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pid_t me = getpid(), pid, w;
	int p[2], keep, st = 0;
	char buf[128];
	ssize_t n, got = 0;
	siginfo_t si;

	if (!heap || map == MAP_FAILED || pipe(p) != 0)
		return 2;
	heap[0] = 5;
	map[0] = 'p';
	keep = dup(1);
	fflush(stdout);

	/* The child writes to a pipe and exits 7; what it changes stays its own. */
	pid = fork();
	if (pid < 0) {
		printf("fork failed: errno %d\n", errno);
		return 3;
	}
	if (pid == 0) {
		in_data = 99;
		in_bss = 99;
		heap[0] = 99;
		map[0] = 'c';
		on_stack = 99;
		close(keep);
		close(p[0]);
		n = snprintf(buf, sizeof(buf), "child: ppid is parent %d, own pid %d",
			     getppid() == me, getpid() != me && getpid() > 0);
		if (write(p[1], buf, (size_t)n) != n)
			_exit(1);
		_exit(7);
	}
	close(p[1]);
	while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = 0;
	close(p[0]);
	printf("pipe: %s (eof %d)\n", buf, n == 0);
	w = waitpid(pid, &st, 0);
	printf("wait: pid %d exited %d status %d\n", w == pid, WIFEXITED(st), WEXITSTATUS(st));
	printf("memory: data %d bss %d heap %d mmap %c stack %d\n", in_data, in_bss, heap[0],
	       map[0], on_stack);
	printf("fd closed by the child: %s\n", fcntl(keep, F_GETFD) >= 0 ? "open" : "closed");
	printf("pid unchanged %d\n", getpid() == me);
	errno = 0;
	w = waitpid(-1, &st, WNOHANG);
	printf("no more children: %d errno %d\n", (int)w, errno);

	/* A child that forks a grandchild and reports its status. */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		pid_t g = fork();
		if (g == 0)
			_exit(3);
		_exit(10 + child_exit_status(g));
	}
	printf("nested: %d\n", child_exit_status(pid));

	/* Killed by a signal's default action. */
	pid = fork();
	if (pid == 0) {
		kill(getpid(), SIGTERM);
		_exit(0);
	}
	printf("signaled: %d\n", child_exit_status(pid));

	/* vfork, then _exit. */
	pid = vfork();
	if (pid == 0)
		_exit(5);
	printf("vfork: %d\n", child_exit_status(pid));

	/* waitid, and WNOWAIT leaving the zombie for a later wait. */
	pid = fork();
	if (pid == 0)
		_exit(4);
	memset(&si, 0, sizeof(si));
	printf("waitid: %d", waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
	printf(" pid %d code %d status %d signo %d", si.si_pid == pid, si.si_code, si.si_status,
	       si.si_signo);
	printf(" then %d\n", child_exit_status(pid));

	/* Bad pointers are refused before the zombie is consumed. */
	pid = fork();
	if (pid == 0)
		_exit(6);
	errno = 0;
	w = (pid_t)syscall(__NR_wait4, pid, (int *)8, 0, NULL);
	n = errno;
	printf("bad status pointer: %d errno %d", (int)w, (int)n);
	errno = 0;
	w = waitpid(pid, &st, 0);
	printf(" then %d errno %d\n", (int)w, errno);
	return 0;
}
