/*
 * The noisy neighbour of benches/isolation.py.  vCPU 0 sets things up and
 * then halts for good; every other vCPU, depending on argv[1]:
 *   busy  computes forever (a guest that really wants the CPU: only a host
 *         CPU limit can contain it);
 *   wait  waits forever for a spinlock vCPU 0 never releases (an idle
 *         spin-wait: the guest runtime's back-off should make it cheap).
 */
#include <vmrpc.h>

enum { UNSET, BUSY, WAIT };

static rt_spinlock_t held = RT_SPINLOCK_INIT;
/* Set by main, which runs after the APs are released. */
static int mode;

void ap_main(unsigned cpu)
{
	volatile uint64_t sink = cpu;
	int m;

	while ((m = __atomic_load_n(&mode, __ATOMIC_ACQUIRE)) == UNSET)
		cpu_relax();
	if (m == WAIT) {
		rt_spin_lock(&held);
		printf("neighbour: vCPU %u got a lock nobody released\n", cpu);
		exit(1);
	}
	for (;;)
		sink = sink * 6364136223846793005ull + 1;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "busy";

	if (!strcmp(name, "wait")) {
		rt_spin_lock(&held);
		__atomic_store_n(&mode, WAIT, __ATOMIC_RELEASE);
	} else if (!strcmp(name, "busy")) {
		__atomic_store_n(&mode, BUSY, __ATOMIC_RELEASE);
	} else {
		printf("neighbour: mode must be busy or wait\n");
		return 2;
	}
	printf("neighbour: %s on %u vCPUs\n", name, rt_cpu_count() - 1);
	rt_park();
}
