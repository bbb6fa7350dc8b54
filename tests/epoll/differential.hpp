// The differential harness: run one scenario against the kernel's epoll and
// against ueq's, record every return value, errno, event mask and data, and
// compare the two records. A divergence is a failure unless the
// compatibility table (docs/guide.md) lists it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ueq/epoll.h"

namespace ueq::test {

// The calls a scenario may make; one instance per implementation.
struct epoll_api {
  const char* name;
  int (*create1)(int);
  int (*create)(int);
  int (*ctl)(int, int, int, epoll_event*);
  int (*wait)(int, epoll_event*, int, int);
  int (*pwait)(int, epoll_event*, int, int, const sigset_t*);
  int (*pwait2)(int, epoll_event*, int, const timespec*, const sigset_t*);
  int (*close)(int);
  int (*dup)(int);
  int (*dup2)(int, int);
};

inline const epoll_api& kernel_api() {
  static const epoll_api a{"kernel",     ::epoll_create1, ::epoll_create, ::epoll_ctl,
                           ::epoll_wait, ::epoll_pwait,   ::epoll_pwait2, ::close,
                           ::dup,        ::dup2};
  return a;
}
inline const epoll_api& ueq_api() {
  static const epoll_api a{"ueq",          ueq_epoll_create1, ueq_epoll_create, ueq_epoll_ctl,
                           ueq_epoll_wait, ueq_epoll_pwait,   ueq_epoll_pwait2, ueq_close,
                           ueq_dup,        ueq_dup2};
  return a;
}

// What a scenario observed, as text lines (readable in a failure report).
class trace {
 public:
  // Records a call's result: "label -> rc" or "label -> -1 ERRNO".
  int rc(const std::string& label, int r) {
    std::ostringstream o;
    o << label << " -> " << (r < 0 ? -1 : r);
    if (r < 0) o << " " << errno_name(errno);
    lines_.push_back(o.str());
    return r;
  }
  // Records a wait's result and its events, sorted by data (epoll returns
  // them in an unspecified order; the sets must match). Event data are
  // recorded as given, so scenarios store small indices in data.u64.
  int wait(const std::string& label, int r, const epoll_event* ev) {
    rc(label, r);
    if (r > 0) {
      std::vector<std::pair<std::uint64_t, std::uint32_t>> v;
      for (int i = 0; i < r; ++i) {
        // epoll_event is packed on x86-64: its fields may be misaligned, so
        // they are copied out, never bound to emplace_back's references.
        const std::uint64_t data = ev[i].data.u64;
        const std::uint32_t events = ev[i].events;
        v.emplace_back(data, events);
      }
      std::sort(v.begin(), v.end());
      std::ostringstream o;
      o << "  events:";
      for (auto& [d, e] : v)
        o << " " << d << "=" << mask_name(e);
      lines_.push_back(o.str());
    }
    return r;
  }
  // Records an fd-returning call: "fd" on success (numbers may differ
  // between the runs), the errno otherwise.
  int fd(const std::string& label, int r) {
    if (r >= 0) {
      lines_.push_back(label + " -> fd");
      return r;
    }
    return rc(label, r);
  }
  void note(const std::string& s) { lines_.push_back(s); }
  const std::vector<std::string>& lines() const { return lines_; }
  std::string str() const {
    std::string s;
    for (auto& l : lines_)
      s += l + "\n";
    return s;
  }

  static std::string errno_name(int e) {
    switch (e) {
      case EBADF:
        return "EBADF";
      case EEXIST:
        return "EEXIST";
      case EINVAL:
        return "EINVAL";
      case ELOOP:
        return "ELOOP";
      case ENOENT:
        return "ENOENT";
      case ENOMEM:
        return "ENOMEM";
      case EPERM:
        return "EPERM";
      case EFAULT:
        return "EFAULT";
      case EINTR:
        return "EINTR";
      case EMFILE:
        return "EMFILE";
      default:
        return "errno" + std::to_string(e);
    }
  }
  static std::string mask_name(std::uint32_t m) {
    static const std::pair<std::uint32_t, const char*> names[] = {
        {EPOLLIN, "IN"},         {EPOLLPRI, "PRI"},       {EPOLLOUT, "OUT"},
        {EPOLLERR, "ERR"},       {EPOLLHUP, "HUP"},       {EPOLLRDHUP, "RDHUP"},
        {EPOLLRDNORM, "RDNORM"}, {EPOLLRDBAND, "RDBAND"}, {EPOLLWRNORM, "WRNORM"},
        {EPOLLWRBAND, "WRBAND"}, {EPOLLMSG, "MSG"}};
    std::string s;
    for (auto& [bit, n] : names)
      if (m & bit) {
        if (!s.empty()) s += "|";
        s += n;
        m &= ~bit;
      }
    if (m) {
      if (!s.empty()) s += "|";
      s += std::to_string(m);
    }
    return s.empty() ? "0" : s;
  }

 private:
  std::vector<std::string> lines_;
};

// Runs `scenario` on both implementations and returns both traces.
using scenario_fn = std::function<void(const epoll_api&, trace&)>;
inline std::pair<trace, trace> run_both(const scenario_fn& s) {
  trace k, u;
  s(kernel_api(), k);
  s(ueq_api(), u);
  return {std::move(k), std::move(u)};
}

}  // namespace ueq::test
