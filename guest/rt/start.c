/*
 * C entry: per-vCPU setup, one-time runtime initialisation on vCPU 0, then
 * main() on vCPU 0 and ap_main() on the others.
 */
#include <vmrpc/backoff.h>

#include "internal.h"

_Static_assert(RT_MAX_VCPUS == VMRPC_MAX_VCPUS, "layout.h disagrees with abi.h");
_Static_assert(RT_MMIO_CRASH == VMRPC_MMIO_CRASH, "layout.h disagrees with abi.h");
_Static_assert(sizeof(struct vmrpc_crash_frame) == 23 * 8, "irq.S pushes 23 quadwords");

int main(int argc, char **argv);
void rt_start(const struct vmrpc_boot_info *bi, unsigned cpu);

const struct vmrpc_boot_info *rt_bootinfo;

static struct rt_percpu percpu[VMRPC_MAX_VCPUS];
/* Set by vCPU 0 once the shared runtime state is ready; the others spin on it. */
static volatile uint32_t rt_released;
static int boot_argc;
static char **boot_argv;
static char *empty_argv[1];

__attribute__((weak)) void ap_main(unsigned cpu)
{
	(void)cpu;
}

_Noreturn void rt_park(void)
{
	for (;;)
		__asm__ volatile("ud2; .byte 2" : : : "memory");
}

_Noreturn void exit(int code)
{
	mmio_write32(VMRPC_MMIO_DEBUG_EXIT, (uint32_t)code);
	/* The VMM stops the VM on that write; never run on if it is slow to. */
	rt_park();
}

_Noreturn void abort(void)
{
	printf("abort\n");
	exit(134);
}

unsigned rt_cpu_id(void)
{
	uint32_t cpu;
	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(cpu) : "i"(RT_GS_CPU));
	return cpu;
}

unsigned rt_thread_id(void)
{
	uint32_t id;
	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(id) : "i"(RT_GS_THREAD));
	return id;
}

unsigned rt_cpu_count(void)
{
	return rt_bootinfo->vcpu_count;
}

const struct vmrpc_boot_info *rt_boot_info(void)
{
	return rt_bootinfo;
}

int rt_argc(void)
{
	return boot_argc;
}

char **rt_argv(void)
{
	return boot_argv;
}

static void percpu_init(unsigned cpu)
{
	struct rt_percpu *p = &percpu[cpu];

	p->cpu = cpu;
	__asm__ volatile("movq %0, %%gs:8" : : "r"(p) : "memory");
	/* One thread per vCPU: the thread index is the vCPU's. */
	__asm__ volatile("movl %0, %%gs:%c1" : : "r"(cpu), "i"(RT_GS_THREAD) : "memory");
}

static int boot_info_ok(const struct vmrpc_boot_info *bi)
{
	if (bi->magic != VMRPC_BOOT_MAGIC || bi->abi_version != VMRPC_ABI_VERSION) {
		printf("vmrpc: bad boot info: magic %#x abi_version %u (want %#x, %u)\n",
		       bi->magic, bi->abi_version, VMRPC_BOOT_MAGIC, VMRPC_ABI_VERSION);
		return 0;
	}
	if (bi->vcpu_count == 0 || bi->vcpu_count > VMRPC_MAX_VCPUS) {
		printf("vmrpc: bad boot info: vcpu_count %u\n", bi->vcpu_count);
		return 0;
	}
	return 1;
}

static void boot_cpu(const struct vmrpc_boot_info *bi)
{
	uintptr_t heap_start, heap_end;

	rt_bootinfo = bi;
	rt_time_init();
	rt_console_init();
	if (!boot_info_ok(bi))
		exit(125);

	heap_start = ((uintptr_t)_end + 4095) & ~(uintptr_t)4095;
	heap_end = bi->heap_end;
	if (heap_end > bi->mem_size)
		heap_end = bi->mem_size; /* never hand out unmapped memory */
	rt_heap_init(heap_start, heap_end);

	if (bi->argv && bi->argc) {
		boot_argc = (int)bi->argc;
		boot_argv = (char **)(uintptr_t)bi->argv;
	} else {
		boot_argc = 0;
		boot_argv = empty_argv;
	}

	rt_idt_init();

	__atomic_store_n(&rt_released, 1, __ATOMIC_RELEASE);
	exit(main(boot_argc, boot_argv));
}

void rt_start(const struct vmrpc_boot_info *bi, unsigned cpu)
{
	struct rt_backoff b = RT_BACKOFF_INIT;

	percpu_init(cpu);
	if (cpu == 0)
		boot_cpu(bi);
	while (!__atomic_load_n(&rt_released, __ATOMIC_ACQUIRE))
		rt_backoff_wait(&b);
	ap_main(cpu);
	rt_park();
}
