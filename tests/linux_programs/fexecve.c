/*
 * fexecve (execveat(fd, "", AT_EMPTY_PATH)), checked by tests/test_linux_exec.py
 * natively and in a LinuxVM (same output expected).  Usage: fexecve SELF SCRIPT:
 * SELF is this program's path, SCRIPT a "#!" script's.  Errors first (a bad fd, a
 * pipe, a script open with O_CLOEXEC: Linux's ENOENT, as its interpreter could not
 * open /dev/fd/N), then SELF through an fd open without O_CLOEXEC, and the new image
 * reports its arguments, AT_EXECFN and that fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AT_EMPTY_PATH_ 0x1000

extern char **environ;

static long raw_fexecve(int fd, char **argv)
{
	long r = syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH_);

	return r < 0 ? -errno : r;
}

int main(int argc, char **argv)
{
	char *args[] = {"fexecve", "new", "image", NULL};
	const char *execfn;
	int p[2], fd;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "new")) {
		execfn = (const char *)getauxval(AT_EXECFN);
		printf("new image: %s %s\n", argv[1], argv[2]);
		printf("AT_EXECFN is /dev/fd/N: %s\n",
		       execfn && !strncmp(execfn, "/dev/fd/", 8) ? "yes" : "no");
		printf("fd 3 still open: %s\n", fcntl(3, F_GETFD) >= 0 ? "yes" : "no");
		return 5;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: fexecve SELF SCRIPT\n");
		return 2;
	}
	printf("bad fd: %ld\n", raw_fexecve(99, args));
	if (pipe(p) != 0)
		return 1;
	printf("pipe: %ld\n", raw_fexecve(p[0], args));
	close(p[0]);
	close(p[1]);
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	printf("script: %ld\n", fd < 0 ? -1000L : raw_fexecve(fd, args));
	close(fd);
	fd = open(argv[1], O_RDONLY);
	if (fd != 3)
		printf("fd is %d, not 3\n", fd);
	fexecve(fd, args, environ); /* the libc's own wrapper */
	printf("fexecve failed: %s\n", strerror(errno));
	return 1;
}
