/*
 * VM RPC for the program (the private calls of sdk/include/vmrpc/linux_calls.h,
 * made by libvmrpc_linux.a): bind_module, perform_rpc and event queues on the
 * personality's own runtime.  The program only reaches the handles and queues
 * it opened itself: never the personality's "files" modules nor the system
 * handle (that could unbind them).  Buffers are checked like any system call's.
 */
#include "linux.h"

#include "sdk/include/vmrpc/linux_calls.h"

#define LX_RPC_HANDLES 64
#define LX_EVQS 16
#define LX_NAME_MAX 256

static int handles[LX_RPC_HANDLES]; /* bound by the program; 0 = free */
static struct vmrpc_evq queues[LX_EVQS];
static uint8_t queue_open[LX_EVQS];

/*
 * The tables as each suspended parent left them (fork.c): what a forked child
 * binds or opens ends with it, as its files do.  Without this, a parent that
 * forks many children that each bind (a warm CPython pool, vmrpc.linux.pool)
 * would fill both tables, and the host's, with handles nobody holds.
 */
static int handles_at_fork[LX_FORK_DEPTH][LX_RPC_HANDLES];
static uint8_t queues_at_fork[LX_FORK_DEPTH][LX_EVQS];
static unsigned forks;

static int reserved_name(const char *name)
{
	return !strcmp(name, LX_FILES_MODULE) || !strcmp(name, LX_FILES_DATA_MODULE) ||
	       !strcmp(name, LX_FORK_MODULE) || !strcmp(name, LX_EXEC_MODULE);
}

static int *handle_slot(int h)
{
	size_t i;

	for (i = 0; i < RT_ARRAY_SIZE(handles); i++)
		if (handles[i] == h)
			return &handles[i];
	return NULL;
}

static long do_bind(uint64_t uname, uint64_t version)
{
	char name[LX_NAME_MAX];
	int *slot = handle_slot(0);
	int h;

	if (lx_user_str(uname, name, sizeof(name)) || version > UINT32_MAX)
		return VMRPC_EINVAL;
	if (reserved_name(name))
		return VMRPC_ENOMODULE;
	if (!slot)
		return VMRPC_EINVAL; /* the table is full */
	h = bind_module(name, (uint32_t)version);
	if (h > 0)
		*slot = h;
	return h;
}

static long do_unbind(int64_t h)
{
	int *slot = h > 0 && h <= INT32_MAX ? handle_slot((int)h) : NULL;
	int r;

	if (!slot)
		return VMRPC_EBADHANDLE;
	r = unbind_module(*slot);
	if (r == 0)
		*slot = 0;
	return r;
}

static long do_rpc(const struct lx_frame *f)
{
	int64_t h = (int64_t)f->rdi;

	if (h <= 0 || h > INT32_MAX || !handle_slot((int)h))
		return VMRPC_EBADHANDLE;
	if (f->rsi > UINT32_MAX || !lx_user_ok(f->rdx, f->r10) || !lx_user_ok(f->r8, f->r9))
		return VMRPC_EINVAL;
	return perform_rpc((int)h, (uint32_t)f->rsi, (const void *)(uintptr_t)f->rdx,
			   (size_t)f->r10, (void *)(uintptr_t)f->r8, (size_t)f->r9);
}

static long do_evq_open(uint64_t uname, uint64_t uinfo)
{
	struct vmrpc_linux_evq_info info;
	char name[LX_NAME_MAX];
	size_t i;
	int r;

	if (lx_user_str(uname, name, sizeof(name)) || !lx_user_ok(uinfo, sizeof(info)))
		return VMRPC_EINVAL;
	for (i = 0; i < LX_EVQS && queue_open[i]; i++)
		;
	if (i == LX_EVQS)
		return VMRPC_EINVAL; /* the table is full */
	r = evq_open(name, &queues[i]);
	if (r)
		return r;
	queue_open[i] = 1;
	info.entries = queues[i].entries;
	info.max_event_size = queues[i].max_event_size;
	memcpy((void *)(uintptr_t)uinfo, &info, sizeof(info));
	return (long)i;
}

static struct vmrpc_evq *queue_at(uint64_t q)
{
	return q < LX_EVQS && queue_open[q] ? &queues[q] : NULL;
}

static long do_evq_put(const struct lx_frame *f)
{
	struct vmrpc_evq *q = queue_at(f->rdi);
	const void *data = (const void *)(uintptr_t)f->rsi;

	if (!q)
		return VMRPC_ENOQUEUE;
	if (!lx_user_ok(f->rsi, f->rdx))
		return VMRPC_EINVAL;
	return f->r10 ? try_put_event(q, data, (size_t)f->rdx) : put_event(q, data, (size_t)f->rdx);
}

static long do_evq_get(const struct lx_frame *f)
{
	struct vmrpc_evq *q = queue_at(f->rdi);
	void *buf = (void *)(uintptr_t)f->rsi;

	if (!q)
		return VMRPC_ENOQUEUE;
	if (!lx_user_ok(f->rsi, f->rdx))
		return VMRPC_EINVAL;
	return f->r10 ? try_get_event(q, buf, (size_t)f->rdx) : get_event(q, buf, (size_t)f->rdx);
}

void lx_rpc_fork_keep(void)
{
	memcpy(handles_at_fork[forks], handles, sizeof(handles));
	memcpy(queues_at_fork[forks], queue_open, sizeof(queue_open));
	forks++;
}

void lx_rpc_fork_end(void)
{
	size_t i;

	forks--;
	for (i = 0; i < RT_ARRAY_SIZE(handles); i++) {
		if (handles[i] && handles[i] != handles_at_fork[forks][i])
			unbind_module(handles[i]); /* the child's: a failure leaves nothing to do */
		handles[i] = handles_at_fork[forks][i];
	}
	/* A queue cannot be closed: the parent's are all still open. */
	memcpy(queue_open, queues_at_fork[forks], sizeof(queue_open));
}

long lx_rpc_syscall(struct lx_frame *f)
{
	switch (f->nr) {
	case VMRPC_LINUX_NR_BIND:
		return do_bind(f->rdi, f->rsi);
	case VMRPC_LINUX_NR_UNBIND:
		return do_unbind((int64_t)f->rdi);
	case VMRPC_LINUX_NR_RPC:
		return do_rpc(f);
	case VMRPC_LINUX_NR_MAX_PAYLOAD:
		return vmrpc_max_payload();
	case VMRPC_LINUX_NR_EVQ_OPEN:
		return do_evq_open(f->rdi, f->rsi);
	case VMRPC_LINUX_NR_EVQ_PUT:
		return do_evq_put(f);
	case VMRPC_LINUX_NR_EVQ_GET:
		return do_evq_get(f);
	case VMRPC_LINUX_NR_EVQ_SPIN:
		evq_set_spin_us(f->rdi > 1000000 ? 1000000 : (unsigned)f->rdi);
		return 0;
	case VMRPC_LINUX_NR_SNAPSHOT:
		return lx_snapshot_point();
	default:
		return LX_ENOSYS_MARK;
	}
}
