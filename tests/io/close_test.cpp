// ueq::io racing io::close: a call that arrives while io::close runs (after
// the close callbacks dropped the fd's sides, before the kernel's close) sees
// the close at once, and what it learnt about the closing file does not make
// a call on the number's next file block.
//
// The window is held open by a close callback of the test's own, registered
// after ueq::io's (callbacks run in order): it lets the reader in, then waits
// (bounded) for the reader to return before the close goes on.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "../taps/taps_support.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/taps/io.hpp"

using namespace ueq;
using namespace std::chrono_literals;
using ueq::test::fd_pair;

namespace {

// Shared by the test and its close callback (a plain function).
struct close_window {
  std::atomic<int> fd{-1};             // the close to hold open
  std::atomic<bool> in_window{false};  // io's callback has run, the fd is still open
  std::atomic<bool> reader_done{false};
  std::atomic<bool> reader_in_time{false};  // returned while the window was open
};

void hold_close_open(int fd, void* ctx) {
  auto* w = static_cast<close_window*>(ctx);
  int want = fd;
  // Once only: the CAS disarms the window for every later close.
  if (!w->fd.compare_exchange_strong(want, -1)) return;
  w->in_window.store(true);
  w->reader_in_time.store(ueq::test::wait_until([&] { return w->reader_done.load(); }, 3000ms));
}

}  // namespace

TEST_CASE("io: a reader that arrives while io::close runs gets EBADF at once", "[io]") {
  fd_pair p;
  ueq::test::make_pipe(p);
  char c;
  // ueq::io's state (and its close callback) exists before ours is added,
  // and the fd has a read side for the close to drop.
  REQUIRE(io::read(p.a, &c, 1, deadline_after_ms(10)).error() == std::errc::timed_out);
  auto svc = tap_service::instance();
  REQUIRE(svc.ok());
  close_window w;
  const std::uint64_t cb = (*svc)->add_close_callback(&hold_close_open, &w);
  const int num = p.a;
  w.fd.store(num);
  std::atomic<int> err{0};
  std::atomic<std::int64_t> took_ns{-1};
  std::thread reader([&] {
    if (!ueq::test::wait_until([&] { return w.in_window.load(); })) return;
    const mono_ns t0 = monotonic_now();
    auto r = io::read(num, &c, 1, deadline_after_ms(10000));
    took_ns.store(monotonic_now() - t0);
    err.store(r ? 0 : r.error().value());
    w.reader_done.store(true);
  });
  const status closed = io::close(num);
  p.a = -1;
  reader.join();
  (*svc)->remove_close_callback(cb);
  CHECK(closed.ok());
  INFO("the reader took " << took_ns.load() / 1000 << " us");
  CHECK(w.reader_in_time.load());
  CHECK(err.load() == EBADF);
  CHECK(took_ns.load() >= 0);
  CHECK(took_ns.load() < 300'000'000);

  // The number's next file is a blocking pipe: the reader's call, made on
  // the closing file, must not make a read of this one block.
  int f[2];
  REQUIRE(::pipe2(f, O_CLOEXEC) == 0);
  if (f[0] != num) {  // the lowest free number is usually num itself
    REQUIRE(::dup2(f[0], num) == num);
    ::close(f[0]);
  }
  fd_pair fresh;
  fresh.a = num;
  fresh.b = f[1];
  std::atomic<bool> done{false};
  result<std::size_t> r = errno_code(0);
  std::thread second([&] {
    r = io::read(num, &c, 1, deadline_after_ms(200));
    done.store(true);
  });
  const bool in_time = ueq::test::wait_until([&] { return done.load(); }, 3000ms);
  if (!in_time) (void)!::write(fresh.b, "x", 1);  // free it to join
  second.join();
  REQUIRE(in_time);
  REQUIRE(r.error() == std::errc::timed_out);
}

// Every eventfd shares one anonymous inode, so io::close's mark for the
// file it is closing (device and inode) also fits a new eventfd that takes
// the number right after the kernel's close. A call on that new, open fd
// must not get EBADF for it: threads that each make an eventfd, read it
// (nothing there: the read waits once, to its deadline) and close it
// through io race each other's closes on the same few numbers.
TEST_CASE("io: a call on a new eventfd is not refused for another one's close", "[io]") {
  constexpr int kThreads = 4;
  constexpr int kIters = 3000;
  const mono_ns stop_at = deadline_after_ms(3000);
  std::atomic<int> refused{0}, other{0}, done{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i)
    ts.emplace_back([&] {
      std::uint64_t v;
      for (int k = 0; k < kIters && monotonic_now() < stop_at; ++k) {
        const int fd = ::eventfd(0, EFD_CLOEXEC);
        if (fd < 0) {
          other.fetch_add(1);
          return;
        }
        auto r = io::read(fd, &v, sizeof v, monotonic_now());
        if (!r && r.error() == std::errc::bad_file_descriptor)
          refused.fetch_add(1);
        else if (r || r.error() != std::errc::timed_out)
          other.fetch_add(1);
        if (!io::close(fd).ok()) other.fetch_add(1);
        done.fetch_add(1);
      }
    });
  for (auto& t : ts)
    t.join();
  INFO(done.load() << " reads");
  CHECK(done.load() > 0);
  CHECK(other.load() == 0);
  CHECK(refused.load() == 0);
}

TEST_CASE("io: a loop that closes every number leaves ueq's own descriptors", "[io]") {
  // A daemon's start-up idiom through ueq (io::close or ueq::close_fd on
  // every number): the host poller and eventfds are no files of the
  // program's, and I/O keeps working afterwards.
  fd_pair warm;
  ueq::test::make_pipe(warm);
  char c;
  REQUIRE(io::read(warm.a, &c, 1, deadline_after_ms(1)).error() == std::errc::timed_out);
  const int own = ueq::next_own_fd(0);
  REQUIRE(own >= 0);  // the default service made some
  REQUIRE(io::close(own).value() == EBADF);
  REQUIRE(ueq::close_fd(own).value() == EBADF);
  REQUIRE(::fcntl(own, F_GETFD) >= 0);  // still open
  for (int fd = ueq::next_own_fd(0); fd >= 0; fd = ueq::next_own_fd(fd + 1))
    REQUIRE(io::close(fd).value() == EBADF);
  fd_pair p;
  ueq::test::make_pipe(p);
  std::atomic<pid_t> tid{0};
  std::atomic<int> got{-1};
  std::thread reader([&] {
    tid.store(ueq::test::current_tid());
    char r = 0;
    auto n = io::read(p.a, &r, 1, deadline_after_ms(10000));
    got.store(n ? r : -n.error().value());
  });
  // Write once the reader waits (a closed host poller fails it at once).
  REQUIRE(ueq::test::wait_until(
      [&] { return got.load() != -1 || ueq::test::thread_sleeping(tid.load()); }));
  REQUIRE(::write(p.b, "w", 1) == 1);
  reader.join();
  REQUIRE(got.load() == 'w');
}
