/*
 * Open, stat and close in the shapes the native path operations serve and
 * those they leave to Python (tests/test_linux_pathops.py).  One line per case.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	struct stat st, st2;
	char buf[16] = {0};
	int fd, dfd;

	int r;
	ssize_t n;

	/* Each call before its printf: argument evaluation order is unspecified. */
	r = stat("/d/f", &st);
	printf("stat %d size %ld\n", r, (long)st.st_size);
	fd = open("/d/f", O_RDONLY);
	r = fstat(fd, &st2);
	printf("fstat %d same %d\n", r, st.st_ino == st2.st_ino);
	n = read(fd, buf, sizeof(buf) - 1);
	printf("read %zd %s\n", n, buf);
	/* lseek is Python's: it takes the handle over from the plane. */
	printf("lseek %ld\n", (long)lseek(fd, 0, SEEK_END));
	printf("close %d\n", close(fd));
	printf("chdir %d\n", chdir("/d"));
	fd = open("f", O_RDONLY);
	printf("relative %d\n", fd >= 0);
	close(fd);
	r = open("/d/../outside", O_RDONLY);
	printf("escape %d %d\n", r, errno);
	r = stat("/d/abs", &st);
	printf("abs symlink %d %d\n", r, errno);
	r = lstat("/d/abs", &st);
	printf("lstat link %d %d\n", r, S_ISLNK(st.st_mode));
	r = open("/d/nope", O_RDONLY);
	printf("missing %d %d\n", r, errno);
	dfd = open("/d", O_RDONLY | O_DIRECTORY);
	printf("dir %d\n", dfd >= 0);
	fd = openat(dfd, "f", O_RDONLY);
	printf("openat dir %zd\n", read(fd, buf, 5));
	close(fd);
	close(dfd);
	/* Enough native closes to send a batch (fastpath.c sends 32 at a time). */
	for (int i = 0; i < 40; i++)
		close(open("/d/f", O_RDONLY));
	printf("done\n");
	return 0;
}
