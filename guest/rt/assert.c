/* The failure path of <assert.h>'s assert. */
#include <assert.h>

#include "internal.h"

_Noreturn void __vmrpc_assert_fail(const char *expr, const char *file, int line, const char *func)
{
	printf("%s:%d: %s: Assertion `%s' failed.\n", file, line, func, expr);
	abort();
}
