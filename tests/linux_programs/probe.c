/*
 * A static Linux test program for vmrpc's Linux personality, built with both
 * `gcc -static` (glibc) and `musl-gcc -static`.  `probe CASE [ARG]` runs one
 * case and prints what the test compares; the exit status is the case's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static int floats(void)
{
	double x = 0;
	for (int i = 1; i <= 1000; i++)
		x += 1.0 / ((double)i * i);
	printf("%.6f %.3e %g\n", x, 6.02214076e23, 0.1 + 0.2);
	return 0;
}

static int sorting(void)
{
	int v[1000];
	uint32_t s = 12345;
	for (int i = 0; i < 1000; i++) {
		s = s * 1103515245u + 12345u;
		v[i] = (int)(s >> 8) % 100000;
	}
	qsort(v, 1000, sizeof(v[0]), cmp);
	for (int i = 1; i < 1000; i++)
		if (v[i - 1] > v[i])
			return 1;
	printf("sorted %d..%d\n", v[0], v[999]);
	return 0;
}

/* Many sizes, small and mmap-sized, freed in a scrambled order; contents checked. */
static int malloc_storm(void)
{
	enum { N = 2000 };
	static unsigned char *p[N];
	static size_t len[N];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			len[i] = (size_t)((i * 7919 + round * 31) % (i % 50 == 0 ? 400000 : 3000)) + 1;
			p[i] = malloc(len[i]);
			if (!p[i])
				return 2;
			memset(p[i], (unsigned char)i, len[i]);
		}
		for (int k = 0; k < N; k++) {
			int i = (k * 1237) % N;
			for (size_t j = 0; j < len[i]; j += 97)
				if (p[i][j] != (unsigned char)i)
					return 3;
			p[i] = realloc(p[i], len[i] * 2);
			if (!p[i] || p[i][0] != (unsigned char)i)
				return 4;
			free(p[i]);
		}
	}
	unsigned char *z = calloc(1 << 20, 1);
	for (int i = 0; i < 1 << 20; i++)
		if (z[i])
			return 5;
	printf("malloc ok\n");
	return 0;
}

static int parse(void)
{
	char *end;
	double d = strtod("  -1234.5e-2xyz", &end);
	printf("%.4f %s %ld\n", d, end, strtol("0x7fff", NULL, 16));
	return 0;
}

static int clocks(void)
{
	struct timespec a, b, r;
	clock_gettime(CLOCK_MONOTONIC, &a);
	struct timespec sl = {0, 2000000};
	nanosleep(&sl, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	clock_getres(CLOCK_MONOTONIC, &r);
	long long ns = (b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
	printf("%lld %ld %s\n", (long long)time(NULL), (long)r.tv_nsec, ns >= 2000000 ? "slept" : "short");
	return 0;
}

static int randomness(void)
{
	unsigned char a[32], b[32];
	if (getrandom(a, sizeof(a), 0) != 32 || getrandom(b, sizeof(b), 0) != 32)
		return 1;
	for (int i = 0; i < 32; i++)
		printf("%02x", a[i]);
	printf(" %s\n", memcmp(a, b, 32) ? "differ" : "same");
	return 0;
}

static int errnos(void)
{
	int r[3], e[3];
	r[0] = open("/nonexistent/x", O_RDONLY);
	e[0] = errno;
	r[1] = (int)write(77, "x", 1);
	e[1] = errno;
	r[2] = mkdir("/nonexistent/y", 0755);
	e[2] = errno;
	printf("%d %d %d %d %d %d\n", r[0], e[0], r[1], e[1], r[2], e[2]);
	return 0;
}

static int files(const char *dir)
{
	char path[512], buf[64];
	snprintf(path, sizeof(path), "%s/probe.out", dir);
	FILE *f = fopen(path, "w");
	if (!f) {
		printf("fopen: %s\n", strerror(errno));
		return 1;
	}
	fprintf(f, "written by probe %d\n", 42);
	fclose(f);
	int fd = open(path, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	struct stat st;
	fstat(fd, &st);
	close(fd);
	printf("%s%lld\n", buf, (long long)st.st_size);
	return 0;
}

static int mappings(void)
{
	char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	p[0] = 1;
	p[(1 << 20) - 1] = 2;
	munmap(p, 1 << 20);
	char *q = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("zeroed %d %d\n", q[0], q[(1 << 20) - 1]);
	return 0;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "floats"))
		return floats();
	if (!strcmp(c, "qsort"))
		return sorting();
	if (!strcmp(c, "malloc"))
		return malloc_storm();
	if (!strcmp(c, "strtod"))
		return parse();
	if (!strcmp(c, "time"))
		return clocks();
	if (!strcmp(c, "random"))
		return randomness();
	if (!strcmp(c, "errno"))
		return errnos();
	if (!strcmp(c, "files"))
		return files(argc > 2 ? argv[2] : "/tmp");
	if (!strcmp(c, "mmap"))
		return mappings();
	if (!strcmp(c, "exit"))
		return argc > 2 ? atoi(argv[2]) : 0;
	if (!strcmp(c, "enosys")) {
		long r = syscall(SYS_io_setup, 1, NULL);
		printf("%ld %d\n", r, errno);
		return 0;
	}
	if (!strcmp(c, "efault")) {
		/* Bad pointers get EFAULT, also one into the personality (below 4 MiB). */
		long r1 = write(1, (void *)16, 5);
		int e1 = errno;
		long r2 = read(0, (void *)0x200000, 16);
		int e2 = errno;
		const char *volatile no_path = NULL;
		int r3 = open(no_path, O_RDONLY);
		int e3 = errno;
		printf("%ld %d %ld %d %d %d\n", r1, e1, r2, e2, r3, e3);
		return 0;
	}
	if (!strcmp(c, "pipes")) {
		int p[2];
		char buf[16] = {0};
		if (pipe2(p, O_CLOEXEC) < 0)
			return 1;
		struct pollfd pf[2] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}};
		int ready0 = poll(pf, 2, 0);
		write(p[1], "ping", 4);
		int ready1 = poll(pf, 1, 0);
		int d = dup2(p[0], 10);
		long n = read(d, buf, sizeof(buf) - 1);
		close(p[1]);
		long eof = read(p[0], buf + 8, 4);
		printf("%d %d %d %ld %s %ld %d\n", ready0, ready1, d, n, buf, eof,
		       fcntl(p[0], F_GETFD) & FD_CLOEXEC);
		return 0;
	}
	if (!strcmp(c, "jit")) {
		/* A syscall site made at run time, which no load-time rewriting sees:
		 * mov $39, %eax (getpid); syscall; ret */
		static const unsigned char code[] = {0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3};
		unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		memcpy(p, code, sizeof(code));
		long pid = ((long (*)(void))(void *)p)();
		printf("%d\n", pid == (long)getpid());
		return 0;
	}
	if (!strcmp(c, "segv"))
		return *(volatile int *)(uintptr_t)(argc > 2 ? 8 : 16) = 1;
	if (!strcmp(c, "stdin")) {
		char line[256];
		while (fgets(line, sizeof(line), stdin))
			fputs(line, stdout);
		fprintf(stderr, "done\n");
		return 0;
	}
	fprintf(stderr, "usage: probe CASE\n");
	return 64;
}
