/* Brings up every vCPU and checks that each one reaches C code. */
#include <vmrpc.h>

static uint32_t checked_in;

void ap_main(unsigned cpu)
{
	printf("vcpu %u of %u\n", cpu, rt_cpu_count());
	__atomic_fetch_add(&checked_in, 1, __ATOMIC_RELEASE);
}

int main(void)
{
	unsigned n = rt_cpu_count();

	printf("vcpu %u of %u\n", rt_cpu_id(), n);
	while (__atomic_load_n(&checked_in, __ATOMIC_ACQUIRE) < n - 1)
		cpu_relax();
	printf("all %u vcpus up\n", n);
	return 0;
}
