/* Runtime-private declarations shared between the files of rt/. */
#ifndef RT_INTERNAL_H
#define RT_INTERNAL_H

#include <vmrpc.h>

#include "layout.h"

#define RT_SPURIOUS_VECTOR 0xFFu

/*
 * Per-vCPU data.  The VMM points GS at a per-vCPU page whose first 4 bytes hold
 * the vCPU index (rt_cpu_id() reads %gs:0); the next 4 the thread index
 * (rt_thread_id(), written by rt_start); the runtime keeps a pointer to this
 * struct at %gs:8.
 */
struct rt_percpu {
	uint32_t cpu;
	uint32_t _pad;
} __attribute__((aligned(64)));

extern const struct vmrpc_boot_info *rt_bootinfo;
extern char _end[]; /* from guest.ld: end of .bss */

static inline struct rt_percpu *rt_this_cpu(void)
{
	struct rt_percpu *p;
	__asm__ volatile("movq %%gs:8, %0" : "=r"(p));
	return p;
}

void rt_console_init(void);
void rt_heap_init(uintptr_t start, uintptr_t end);
void rt_idt_init(void); /* fills the VMM's IDT page (vCPU 0, once) */
void rt_time_init(void); /* clock()'s start: the TSC at boot */

/* printf core: formats into a sink; returns the full formatted length. */
struct rt_sink {
	void (*put)(struct rt_sink *sink, const char *s, size_t n);
};
int rt_vformat(struct rt_sink *sink, const char *fmt, va_list ap);

#ifndef RT_NO_FLOAT
/* printf_float.c: formats v for conversion f/F/e/E/g/G into out (at least
 * RT_FLOAT_MAX_LEN bytes, not NUL-terminated) without the sign, which goes to
 * *negative; returns the length.  Precisions above RT_FLOAT_MAX_PREC are cut. */
#define RT_FLOAT_MAX_PREC 800
#define RT_FLOAT_MAX_LEN (RT_FLOAT_MAX_PREC + 320)
int rt_format_double(double v, char conv, int prec, int alt, char *out, int *negative);
#endif

/* Interrupt entry stubs (irq.S). */
void rt_irq_stub_vmrpc(void);
void rt_irq_stub_spurious(void);
void rt_ud_stub(void);
/* Crash-report stubs by exception vector (NULL for #UD, which rt_ud_stub owns). */
extern void (*const rt_exc_stubs[RT_EXCEPTIONS])(void);

#endif /* RT_INTERNAL_H */
