// A non-blocking pipe for the epoll suite's tests; the read end, the one
// registered in sets, is closed through ueq (so its registrations go).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "ueq/epoll.h"

namespace ueq::test {

struct pipe_fds {
  int r = -1, w = -1;
  pipe_fds() {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    r = p[0];
    w = p[1];
  }
  ~pipe_fds() {
    if (r >= 0) ueq_close(r);
    if (w >= 0) ::close(w);
  }
  pipe_fds(const pipe_fds&) = delete;
  pipe_fds& operator=(const pipe_fds&) = delete;
};

}  // namespace ueq::test
