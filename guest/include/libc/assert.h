/*
 * <assert.h> of the vmrpc guest SDK.  A failed assert prints
 * "file:line: function: Assertion `expr' failed." and ends the VM like
 * abort() (exit code 134).  Like every <assert.h>, this one may be included
 * again with NDEBUG changed, so it has no include guard for assert itself.
 */
#undef assert
#ifdef NDEBUG
#define assert(expr) ((void)0)
#else
#define assert(expr) \
	((expr) ? (void)0 : __vmrpc_assert_fail(#expr, __FILE__, __LINE__, __func__))
#endif

#ifndef _VMRPC_LIBC_ASSERT_H
#define _VMRPC_LIBC_ASSERT_H
_Noreturn void __vmrpc_assert_fail(const char *expr, const char *file, int line,
				   const char *func);
#ifndef __cplusplus
#define static_assert _Static_assert
#endif
#endif
