/* ueq/epoll.h — the Linux epoll API, implemented on ueq's event queues.
 *
 * What it is for: programs that want epoll's exact behaviour on top of ueq
 * (coalescing event queues fed by FD taps) by linking, without interposing:
 * every call here has the same arguments, results, errno values and
 * semantics as the Linux call without the `ueq_` prefix, with the
 * differences listed in docs/guide.md ("epoll compatibility"). The preload
 * library (libueq-epoll-preload.so, started with `ueq-run`) exports the same
 * functions under the real names for unmodified programs.
 *
 * Contract:
 *  - An epoll fd made here is a real kernel epoll fd (it watches a hidden
 *    eventfd that ueq keeps readable while events are pending), so
 *    poll/select/kernel epoll and other ueq instances can watch it, and
 *    fcntl, dup and close work on it. Close it (and every fd registered in
 *    an instance) with ueq_close, or through the preload library's close:
 *    that is how ueq learns at once that a registration must go. A number
 *    closed behind ueq's back and reused is noticed when it matters (the
 *    kernel is asked before the number is used as a set).
 *  - Calls on an epoll fd ueq did not make pass through to the kernel.
 *  - fork(): every instance becomes one kernel epoll set shared by parent
 *    and child (its entries move into its fd), as on Linux; later calls on
 *    it pass through to the kernel. Instances made after the fork are ueq's.
 *  - Functions return -1 and set errno exactly as Linux does; they never
 *    print, abort or crash on bad arguments (bad pointers give EFAULT).
 *  - Thread-safe: any call from any thread, on any instance. A thread
 *    blocked in ueq_epoll_wait sleeps in the kernel; a signal handler that
 *    runs meanwhile makes it return EINTR (never restarted). Called from a
 *    uthread (with no signal mask), the wait parks only that uthread and
 *    is not interrupted by signals; with a signal mask it sleeps in the
 *    kernel like a thread, holding its vcore (docs/guide.md, compatibility).
 *  - Diagnostics go nowhere unless UEQ_LOG=stderr or UEQ_LOG=/path is set.
 *
 * Usage:
 *   int ep = ueq_epoll_create1(EPOLL_CLOEXEC);
 *   struct epoll_event ev = {.events = EPOLLIN, .data.fd = sock};
 *   ueq_epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev);
 *   struct epoll_event out[64];
 *   int n = ueq_epoll_wait(ep, out, 64, 1000);
 *   ueq_close(ep);
 */
#ifndef UEQ_EPOLL_H
#define UEQ_EPOLL_H

#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

int ueq_epoll_create(int size);
int ueq_epoll_create1(int flags);
int ueq_epoll_ctl(int epfd, int op, int fd, struct epoll_event* event);
int ueq_epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout);
int ueq_epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                    const sigset_t* sigmask);
int ueq_epoll_pwait2(int epfd, struct epoll_event* events, int maxevents,
                     const struct timespec* timeout, const sigset_t* sigmask);

/* close(2) that also removes fd from every ueq epoll set (and tears an
 * instance down when fd is an epoll fd made here). */
int ueq_close(int fd);
/* dup/dup2/dup3 that keep ueq's bookkeeping right: duplicating an epoll fd
 * made here yields another fd for the same instance; dup2/dup3 over an fd
 * that is registered somewhere removes the old registration first. */
int ueq_dup(int fd);
int ueq_dup2(int oldfd, int newfd);
int ueq_dup3(int oldfd, int newfd, int flags);

#ifdef __cplusplus
}
#endif

#endif /* UEQ_EPOLL_H */
