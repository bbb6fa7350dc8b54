// The runtime's own descriptors beside the program's (ueq/runtime/fd.hpp).
#include "ueq/runtime/fd.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>

namespace ueq {

std::size_t host_max_fds() noexcept {
  std::size_t n = std::size_t{1} << 20;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
    unsigned long v = 0;
    if (std::fscanf(f, "%lu", &v) == 1 && v > 0) n = v;
    std::fclose(f);
  }
  return n;
}

int hide_fd(int fd) noexcept {
  if (fd < 0) return fd;
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 512) return fd;
  // The top 256 numbers below the soft limit, searched from their bottom.
  const long floor = static_cast<long>(rl.rlim_cur) - 256;
  if (fd >= floor) return fd;
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
  if (high < 0) return fd;
  ::close(fd);
  return high;
}

int epoll_pwait_until(int ep, epoll_event* ev, int max, mono_ns deadline,
                      const sigset_t* mask) noexcept {
  timespec ts, *tsp = nullptr;
  long ms = -1;  // epoll_pwait's timeout
  if (deadline != kNoDeadline) {
    const mono_ns left = time_left(deadline);
    ts = to_timespec(left);
    tsp = &ts;
    ms = std::min<long>(INT_MAX, ts.tv_sec * 1000L + (ts.tv_nsec + 999999) / 1000000);
  }
  // No time left (an immediate poll): epoll_pwait's timeout of 0, which
  // every kernel has and which copies no timespec in. Else epoll_pwait2
  // for its nanoseconds, where the kernel has it.
  static std::atomic<bool> no_pwait2{false};
  if (ms != 0 && !no_pwait2.load(std::memory_order_relaxed)) {
    const long r = ::syscall(SYS_epoll_pwait2, ep, ev, max, tsp, mask, _NSIG / 8);
    if (r >= 0 || (errno != ENOSYS && errno != EPERM)) return static_cast<int>(r);
    no_pwait2.store(true, std::memory_order_relaxed);  // a hint only: relaxed
  }
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait, ep, ev, max, static_cast<int>(ms), mask, _NSIG / 8));
}
}  // namespace ueq
