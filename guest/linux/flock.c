/*
 * POSIX record locks (fcntl F_GETLK, F_SETLK, F_SETLKW), as SQLite takes them.
 * The VM runs one program: its threads are one process, and a process's own
 * record locks never conflict with each other, so every request is granted and
 * F_GETLK finds no conflicting lock.  Locks are not taken on the host file:
 * another host process holding one is not seen (docs/linux.md).
 */
#include "linux.h"

#define F_GETLK 5
#define F_SETLK 6
#define F_SETLKW 7
#define F_RDLCK 0
#define F_WRLCK 1
#define F_UNLCK 2

struct lx_flock {
	int16_t type, whence;
	int64_t start, len;
	int32_t pid;
	int32_t pad;
};

long lx_fcntl_lock(int cmd, uint64_t arg)
{
	struct lx_flock l;

	if (cmd != F_GETLK && cmd != F_SETLK && cmd != F_SETLKW)
		return -EINVAL;
	if (!lx_user_ok(arg, sizeof(l)))
		return -EFAULT;
	memcpy(&l, (const void *)(uintptr_t)arg, sizeof(l));
	if (l.type != F_RDLCK && l.type != F_WRLCK && l.type != F_UNLCK)
		return -EINVAL;
	if (l.whence < 0 || l.whence > 2)
		return -EINVAL;
	if (cmd == F_GETLK) {
		l.type = F_UNLCK; /* nobody else could hold a conflicting one */
		memcpy((void *)(uintptr_t)arg, &l, sizeof(l));
	}
	return 0;
}
