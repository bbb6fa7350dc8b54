// Randomized differential sequences: create/ctl/wait/read/write/close over
// pipes, socketpairs and eventfds, run from the same seed on the kernel's
// epoll and on ueq's; every return value, errno, event mask and data must
// match. Sequences avoid the listed differences (docs/guide.md): they do not
// dup a registered fd and then close one of the numbers, and every wait has
// room for all ready fds (which ones come first when they do not fit may
// differ; fair rotation itself is checked in conformance_test).
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>

#include "../support.hpp"
#include "differential.hpp"

using ueq::test::epoll_api;
using ueq::test::trace;

namespace {

void sequence(std::uint64_t seed, const epoll_api& api, trace& t) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  int ep[2] = {api.create1(0), api.create1(0)};
  // Object i: an fd, whether it is open, and its kind.
  struct obj {
    int fd;
    int kind;  // 0 pipe read, 1 pipe write, 2 socket, 3 eventfd
    bool open = true;
  };
  std::vector<obj> objs;
  for (int i = 0; i < 3; ++i) {
    int p[2];
    ::pipe2(p, O_NONBLOCK | O_CLOEXEC);
    objs.push_back({p[0], 0});
    objs.push_back({p[1], 1});
    int s[2];
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s);
    objs.push_back({s[0], 2});
    objs.push_back({s[1], 2});
    objs.push_back({::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), 3});
  }
  static const std::uint32_t kMasks[] = {EPOLLIN,
                                         EPOLLOUT,
                                         EPOLLIN | EPOLLOUT,
                                         EPOLLIN | EPOLLET,
                                         EPOLLOUT | EPOLLET,
                                         EPOLLIN | EPOLLONESHOT,
                                         EPOLLIN | EPOLLRDHUP,
                                         EPOLLIN | EPOLLOUT | EPOLLET | EPOLLONESHOT,
                                         EPOLLPRI | EPOLLIN};
  for (int step = 0; step < 60; ++step) {
    const int e = pick(2);
    const int i = pick(static_cast<int>(objs.size()));
    obj& o = objs[i];
    const std::string who = " e" + std::to_string(e) + " o" + std::to_string(i);
    switch (pick(8)) {
      case 0:
      case 1: {
        epoll_event ev{};
        ev.events = kMasks[pick(9)];
        ev.data.u64 = static_cast<std::uint64_t>(i * 100 + step);
        t.rc("ADD" + who + " " + trace::mask_name(ev.events),
             api.ctl(ep[e], EPOLL_CTL_ADD, o.open ? o.fd : 100000, &ev));
        break;
      }
      case 2: {
        epoll_event ev{};
        ev.events = kMasks[pick(9)];
        ev.data.u64 = static_cast<std::uint64_t>(i * 100 + step);
        t.rc("MOD" + who + " " + trace::mask_name(ev.events),
             api.ctl(ep[e], EPOLL_CTL_MOD, o.open ? o.fd : 100000, &ev));
        break;
      }
      case 3:
        t.rc("DEL" + who, api.ctl(ep[e], EPOLL_CTL_DEL, o.open ? o.fd : 100000, nullptr));
        break;
      case 4: {
        if (!o.open) break;
        char buf[64] = {};
        if (o.kind == 3) {
          std::uint64_t one = 1;
          t.rc("write eventfd o" + std::to_string(i), static_cast<int>(::write(o.fd, &one, 8)));
        } else if (o.kind != 0) {
          t.rc("write o" + std::to_string(i), static_cast<int>(::write(o.fd, buf, 1 + pick(40))));
        }
        break;
      }
      case 5: {
        if (!o.open || o.kind == 1) break;
        char buf[64];
        const int r = static_cast<int>(::read(o.fd, buf, o.kind == 3 ? 8 : 1 + pick(60)));
        t.rc("read o" + std::to_string(i), r < 0 ? -1 : (o.kind == 3 ? 8 : r));
        break;
      }
      case 6: {
        // maxevents always fits every ready fd: which fds come first when
        // they do not fit is a listed difference (rotation is tested apart).
        epoll_event out[16];
        const int max = 16;
        (void)pick(8);
        t.wait("wait e" + std::to_string(e) + " max " + std::to_string(max),
               api.wait(ep[e], out, max, 0), out);
        break;
      }
      case 7:
        if (o.open && pick(4) == 0) {
          t.rc("close o" + std::to_string(i), api.close(o.fd));
          o.open = false;
        }
        break;
    }
  }
  for (auto& o : objs)
    if (o.open) api.close(o.fd);
  api.close(ep[0]);
  api.close(ep[1]);
}

}  // namespace

TEST_CASE("randomized sequences: kernel and ueq traces are identical", "[epoll]") {
  const std::uint64_t n = ueq::test::scaled(300);
  std::uint64_t base = 1;
  if (const char* s = std::getenv("UEQ_EPOLL_SEED")) base = std::strtoull(s, nullptr, 10);
  for (std::uint64_t seed = base; seed < base + n; ++seed) {
    trace k, u;
    sequence(seed, ueq::test::kernel_api(), k);
    sequence(seed, ueq::test::ueq_api(), u);
    if (k.lines() != u.lines()) {
      // Report the first differing line with the context before it.
      std::size_t d = 0;
      while (d < k.lines().size() && d < u.lines().size() && k.lines()[d] == u.lines()[d])
        ++d;
      std::string ctx;
      for (std::size_t j = d > 6 ? d - 6 : 0; j < d; ++j)
        ctx += "  " + k.lines()[j] + "\n";
      if (std::getenv("UEQ_EPOLL_DUMP")) {
        std::fprintf(stderr, "--- kernel\n%s--- ueq\n%s", k.str().c_str(), u.str().c_str());
      }
      INFO("seed " << seed << " diverges at line " << d << "\n"
                   << ctx << "kernel: " << (d < k.lines().size() ? k.lines()[d] : "<end>")
                   << "\nueq:    " << (d < u.lines().size() ? u.lines()[d] : "<end>"));
      REQUIRE(k.lines() == u.lines());
    }
  }
}
