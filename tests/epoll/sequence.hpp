// The operation sequences of the randomized differential tests and the
// fuzz targets: create/ctl/wait/read/write/close over pipes, socketpairs and
// eventfds, driven by a chooser (`pick(n)` returns 0..n-1), run on one
// implementation into a trace. Both implementations get the same choices,
// and their traces must match.
//
// Sequences avoid the listed differences (docs/guide.md): they do not dup a
// registered fd and then close one of the numbers, and every wait has room
// for all ready fds (which ones come first when they do not fit may differ;
// fair rotation itself is checked in conformance_test).
#pragma once

#include <climits>
#include <string>
#include <vector>

#include "differential.hpp"

namespace ueq::test {

// One hostile call: bad fds, ops, flags, pointers, sizes (hostile mode).
template <class Pick>
void hostile_call(Pick&& pick, const epoll_api& api, trace& t, int ep, int fd) {
  static epoll_event* const kBadPtrs[] = {nullptr, reinterpret_cast<epoll_event*>(16),
                                          reinterpret_cast<epoll_event*>(0xffff800000000000ull)};
  static const int kOps[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, 0, 4, -1, 99};
  static const int kFds[] = {-1, 100000, 0};
  // Valid sizes leave room for every ready fd (see the note at the top).
  static const int kMax[] = {0, -1, 16, INT_MAX, INT_MAX / 12 + 1};
  const int which = pick(6);
  epoll_event ev{};
  ev.events = static_cast<std::uint32_t>(pick(1 << 16)) | (pick(2) ? EPOLLEXCLUSIVE : 0u) |
              (pick(2) ? EPOLLET : 0u) | (pick(2) ? EPOLLONESHOT : 0u);
  ev.data.u64 = 7;
  switch (which) {
    case 0:
      t.rc("hostile ctl op", api.ctl(ep, kOps[pick(7)], fd, pick(2) ? &ev : kBadPtrs[pick(3)]));
      break;
    case 1:
      t.rc("hostile ctl fds",
           api.ctl(pick(2) ? ep : kFds[pick(3)], kOps[pick(3)], pick(2) ? fd : kFds[pick(3)], &ev));
      break;
    case 2: {
      epoll_event out[16];
      t.rc("hostile wait", api.wait(pick(2) ? ep : kFds[pick(3)], pick(2) ? out : kBadPtrs[pick(3)],
                                    kMax[pick(5)], 0));
      break;
    }
    case 3: {
      epoll_event out[16];
      timespec bad{pick(2) ? -1 : 0, pick(2) ? 1000000000L : 0};
      t.rc("hostile pwait2",
           api.pwait2(ep, out, 16, pick(2) ? &bad : reinterpret_cast<timespec*>(16), nullptr));
      break;
    }
    case 4:
      t.fd("hostile create1", [&] {
        const int r = api.create1(pick(2) ? EPOLL_CLOEXEC : pick(1 << 20));
        if (r >= 0) api.close(r);
        return r;
      }());
      break;
    default:
      t.fd("hostile create", [&] {
        const int r = api.create(pick(3) - 1);
        if (r >= 0) api.close(r);
        return r;
      }());
      break;
  }
}

template <class Pick>
void run_sequence(Pick&& pick, int steps, bool hostile, const epoll_api& api, trace& t) {
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
  for (int step = 0; step < steps; ++step) {
    const int e = pick(2);
    const int i = pick(static_cast<int>(objs.size()));
    obj& o = objs[i];
    const std::string who = " e" + std::to_string(e) + " o" + std::to_string(i);
    if (hostile && pick(3) == 0) {
      hostile_call(pick, api, t, ep[e], o.open ? o.fd : 100000);
      continue;
    }
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

}  // namespace ueq::test
