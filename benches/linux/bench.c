/*
 * The Linux benchmark program, run unchanged natively and in vmrpc by
 * benches/linux.py (built with gcc -static).  `bench CASE N [ARG]` prints one
 * line "BENCH case ns_per_op" (or MB/s for read) measured with CLOCK_MONOTONIC.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ll + t.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	long n = argc > 2 ? atol(argv[2]) : 1000;
	long long t0 = now_ns(), t1;

	if (!strcmp(c, "null")) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (!strcmp(c, "clock")) {
		struct timespec t;
		for (long i = 0; i < n; i++)
			clock_gettime(CLOCK_MONOTONIC, &t);
	} else if (!strcmp(c, "read")) {
		static char buf[1 << 20];
		long long total = 0;
		ssize_t r;
		int fd = open(argv[3], O_RDONLY);
		if (fd < 0)
			return 2;
		t0 = now_ns();
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			total += r;
		t1 = now_ns();
		close(fd);
		printf("BENCH read %.1f %lld\n", total / 1e6 / ((t1 - t0) / 1e9), total);
		return 0;
	} else if (!strcmp(c, "stat")) {
		char path[512];
		struct stat st;
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/f%ld", argv[3], i % 100);
			if (stat(path, &st) < 0)
				return 3;
			int fd = open(path, O_RDONLY);
			if (fd < 0)
				return 4;
			close(fd);
		}
	} else {
		return 64;
	}
	t1 = now_ns();
	printf("BENCH %s %.1f\n", c, (double)(t1 - t0) / (double)n);
	return 0;
}
