/*
 * Shared by the network system calls' two files: net.c (helpers, addresses, data,
 * the dispatch) and net_setup.c (setup and options), which uses net.c's helpers.
 */
#ifndef LX_NET_H
#define LX_NET_H

#include "linux.h"

#define AF_UNIX 1
#define MAX_ADDR ((socklen_t)sizeof(struct sockaddr_storage))

/* net.c */
long lib(long r);
int64_t sock_of(int64_t fd, int *nonblock);
int sock_type(int64_t s);
long addr_in(uint64_t uaddr, uint64_t ulen, struct sockaddr_storage *ss, socklen_t *len);
int64_t sock_and_cap(int64_t fd, uint64_t uaddr, uint64_t ulenp, socklen_t *cap, int *nb);
void addr_out(const struct sockaddr_storage *ss, socklen_t got, uint64_t uaddr,
	      uint64_t ulenp, socklen_t cap);

/* net_setup.c */
long do_socket(int domain, int type, int protocol);
long do_socketpair(int domain, int type, int protocol, uint64_t usv);
long do_bind(int64_t fd, uint64_t uaddr, uint64_t ulen);
long do_listen(int64_t fd, int backlog);
long do_accept(int64_t fd, uint64_t uaddr, uint64_t ulenp, int flags);
long do_connect(int64_t fd, uint64_t uaddr, uint64_t ulen);
long do_shutdown(int64_t fd, int how);
long do_name(int64_t fd, uint64_t uaddr, uint64_t ulenp, int peer);
long do_setsockopt(int64_t fd, int level, int name, uint64_t uval, uint64_t ulen);
long do_getsockopt(int64_t fd, int level, int name, uint64_t uval, uint64_t ulenp);

#endif
