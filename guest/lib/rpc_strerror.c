/*
 * Names of the VM RPC error codes.  Its own file, with no dependency beyond the
 * ABI, so that the Linux programs' library (linux/sdk/) shares it.
 */
#include <vmrpc/abi.h>

const char *vmrpc_strerror(int err);

const char *vmrpc_strerror(int err)
{
	switch (err) {
	case VMRPC_ENOMODULE: return "ENOMODULE (no such module/version)";
	case VMRPC_ENOFUNC: return "ENOFUNC (no such function)";
	case VMRPC_EHOSTFN: return "EHOSTFN (host function failed)";
	case VMRPC_ETOOBIG: return "ETOOBIG (request too large)";
	case VMRPC_EGONE: return "EGONE (module unregistered)";
	case VMRPC_EBADHANDLE: return "EBADHANDLE (handle not bound)";
	case VMRPC_EINVAL: return "EINVAL (malformed request)";
	case VMRPC_ERANGE: return "ERANGE (response larger than buffer)";
	case VMRPC_ESHUTDOWN: return "ESHUTDOWN (VM stopping)";
	case VMRPC_ENODEV: return "ENODEV (no VM RPC)";
	case VMRPC_EFULL: return "EFULL (event queue full)";
	case VMRPC_EEMPTY: return "EEMPTY (event queue empty)";
	case VMRPC_ENOQUEUE: return "ENOQUEUE (no such event queue)";
	case VMRPC_ELIMIT: return "ELIMIT (per-VM limit reached)";
	case VMRPC_ETIMEDOUT: return "ETIMEDOUT (host function time limit)";
	default: return err >= 0 ? "ok" : "unknown error";
	}
}
