// The runtime's own descriptors beside the program's (ueq/runtime/fd.hpp).
#include "ueq/runtime/fd.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

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

}  // namespace ueq
