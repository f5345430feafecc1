/*
 * Page protections and file mappings, one case per argv[1] (tests/test_linux_mem.py).
 * Cases that end in a fault print what they are about to touch first (stdout
 * flushed), so the test can check the fault address.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static char *anon(size_t len, int prot)
{
	char *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static void about_to(const char *what, const void *addr)
{
	printf("%s %lx\n", what, (unsigned long)addr);
	fflush(stdout);
}

static int text_marker(void)
{
	return 7;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	if (!strcmp(c, "write-readonly")) {
		char *p = anon(PAGE, PROT_READ | PROT_WRITE);
		p[0] = 42;
		if (mprotect(p, PAGE, PROT_READ))
			return 3;
		printf("read %d\n", p[0]);
		about_to("write", p);
		p[0] = 43;
		return 0;
	}
	if (!strcmp(c, "guard")) {
		/* A PROT_NONE guard page between two usable ones, as a thread stack has. */
		char *p = anon(3 * PAGE, PROT_READ | PROT_WRITE);
		if (mprotect(p + PAGE, PAGE, PROT_NONE))
			return 3;
		p[0] = 1;
		p[2 * PAGE] = 2;
		printf("around %d %d\n", p[0], p[2 * PAGE]);
		about_to("read", p + PAGE);
		return *(volatile char *)(p + PAGE);
	}
	if (!strcmp(c, "restore")) {
		char *p = anon(2 * PAGE, PROT_READ);
		if (mprotect(p, 2 * PAGE, PROT_READ | PROT_WRITE))
			return 3;
		p[0] = 5;
		p[PAGE] = 6;
		/* Unmapped and mapped again: zeroed and writable. */
		munmap(p, 2 * PAGE);
		char *q = mmap(p, 2 * PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		q[1] = 9;
		printf("restored %d %d %d %d\n", p[0] + p[PAGE], q == p, q[1], q[0]);
		return 0;
	}
	if (!strcmp(c, "after-munmap")) {
		char *p = anon(PAGE, PROT_READ | PROT_WRITE);
		munmap(p, PAGE);
		about_to("read", p);
		return *(volatile char *)p;
	}
	if (!strcmp(c, "text")) {
		/* The program's own code is not writable (W^X for the loaded segments). */
		volatile unsigned char *t = (volatile unsigned char *)(void *)text_marker;
		printf("code %d\n", text_marker());
		about_to("write", (const void *)((unsigned long)t));
		t[0] = 0xc3;
		return 0;
	}
	if (!strcmp(c, "exec")) {
		/* Code in a mapping runs with PROT_EXEC and faults without it. */
		unsigned char *p = (unsigned char *)anon(PAGE, PROT_READ | PROT_WRITE);
		p[0] = 0xb8; /* mov $7, %eax; ret */
		p[1] = 7;
		p[2] = p[3] = p[4] = 0;
		p[5] = 0xc3;
		if (mprotect(p, PAGE, PROT_READ | PROT_EXEC))
			return 3;
		printf("ran %d\n", ((int (*)(void))(void *)p)());
		if (mprotect(p, PAGE, PROT_READ))
			return 3;
		about_to("exec", p);
		return ((int (*)(void))(void *)p)();
	}
	if (!strcmp(c, "errors")) {
		char *p = anon(PAGE, PROT_READ | PROT_WRITE);
		int a = mprotect(p + 1, PAGE, PROT_READ) == -1 ? errno : 0;
		int b = mprotect(p, PAGE, 0x100) == -1 ? errno : 0;
		int d = mprotect((void *)0x1000, PAGE, PROT_READ) == -1 ? errno : 0;
		printf("%d %d %d\n", a, b, d);
		return 0;
	}
	if (!strcmp(c, "file") && argc > 2) {
		int fd = open(argv[2], O_RDONLY);
		char first, *priv, *shared;
		if (fd < 0)
			return 3;
		priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (priv == MAP_FAILED)
			return 4;
		/* The private copy is ours: changing it leaves the file alone. */
		priv[0] = 'X';
		if (pread(fd, &first, 1, 0) != 1)
			return 5;
		printf("private %c %c %.5s|%d\n", priv[0], first, priv + 1, priv[2 * PAGE - 1]);
		/* Shared: read-only works, writable is refused. */
		shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		printf("shared-rw %s\n", shared == MAP_FAILED ? strerror(errno) : "mapped");
		shared = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
		if (shared == MAP_FAILED)
			return 6;
		printf("shared-ro %.6s\n", shared);
		printf("mprotect-w %s\n",
		       mprotect(shared, PAGE, PROT_READ | PROT_WRITE) ? strerror(errno) : "ok");
		/* A read-only private mapping of a file faults on write. */
		char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE);
		if (ro == MAP_FAILED)
			return 7;
		printf("second page %.4s\n", ro);
		about_to("write", ro);
		ro[0] = 1;
		return 0;
	}
	fprintf(stderr, "unknown case %s\n", c);
	return 100;
}
