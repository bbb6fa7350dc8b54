// Choosing a host backend: the one place that reads UEQ_BACKEND.
#include <cstdlib>
#include <cstring>

#include "ueq/taps/backend.hpp"

namespace ueq {

result<std::unique_ptr<host_backend>> make_backend(backend_kind kind) {
  if (kind == backend_kind::automatic) {
    // io_uring only when asked for, and only if it works here (containers
    // often forbid it): otherwise the epoll backend, which always does.
    const char* env = std::getenv("UEQ_BACKEND");
    if (env && !std::strcmp(env, "io_uring")) {
      auto u = make_uring_backend();
      if (u) return u;
    }
    return make_epoll_backend();
  }
  return kind == backend_kind::io_uring ? make_uring_backend() : make_epoll_backend();
}

}  // namespace ueq
