/*
 * Code the program maps executable at run time (ld.so mapping a shared
 * library): its syscall sites are rewritten by the host like the program's own
 * at load time (the "linux_code" module, iced-x86), so they take the page-0
 * sled; any site missed still traps to MSR_LSTAR.
 */
#include "linux.h"

static int code_handle; /* 0: not bound yet; < 0: the host has no such module */

long lx_code_rewrite(uint64_t addr, uint64_t len)
{
	struct lx_range r = {addr, len};

	if (!(lx_info->flags & LX_FLAG_REWRITE) || !len)
		return 0;
	if (lx_lazy_module(&code_handle, LX_CODE_MODULE) < 0)
		return 0; /* no rewriter: the sites trap to MSR_LSTAR instead */
	return lx_module_call(&code_handle, LX_CODE_MODULE, LXC_REWRITE, &r, sizeof(r));
}
