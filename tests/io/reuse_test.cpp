// ueq::io when an fd number is closed behind ueq's back (plain close, dup2)
// and reused by a *blocking* file: nothing ueq learnt about the old file
// (made non-blocking, a regular file, a listening socket) may make a call on
// the new one block in the kernel. Each call must end by its deadline, and a
// uthread's call must not stall its vcore. A regular file that takes the
// number is read and written plainly.
//
// A call that wrongly blocks in the kernel is freed by feeding the new file
// (write a byte, drain the pipe, connect) once the bounded wait for it has
// failed, so the test fails instead of hanging.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "../taps/taps_support.hpp"
#include "ueq/taps/io.hpp"
#include "ueq/uthread/uthread.hpp"

using namespace ueq;
using namespace std::chrono_literals;
using ueq::test::fd_pair;

namespace {

// Runs `call` on a thread of its own; true if it returned within `limit`.
// If it did not, `unblock` frees it so that the thread can be joined.
template <class Call, class Unblock>
bool returns_within(std::chrono::milliseconds limit, Call call, Unblock unblock) {
  std::atomic<bool> done{false};
  std::thread t([&] {
    call();
    done.store(true);
  });
  const bool in_time = ueq::test::wait_until([&] { return done.load(); }, limit);
  if (!in_time) unblock();
  t.join();
  return in_time;
}

// A blocking pipe whose read end (or write end) is moved onto `num` with
// dup2, which closes the file there behind ueq's back.
struct blocking_pipe {
  int rd = -1, wr = -1;
  blocking_pipe(int num, bool read_end_at_num) {
    int f[2];
    REQUIRE(::pipe2(f, O_CLOEXEC) == 0);
    const int moved = read_end_at_num ? f[0] : f[1];
    REQUIRE(::dup2(moved, num) == num);
    ::close(moved);
    rd = read_end_at_num ? num : f[0];
    wr = read_end_at_num ? f[1] : num;
    REQUIRE((::fcntl(num, F_GETFL) & O_NONBLOCK) == 0);
  }
  ~blocking_pipe() {
    (void)ueq::close_fd(rd);
    (void)ueq::close_fd(wr);
  }
};

// A regular file with a few bytes in it, unlinked.
int temp_file() {
  char path[] = "/tmp/ueq-io-reuse-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  REQUIRE(::write(fd, "abc", 3) == 3);
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  return fd;
}

}  // namespace

TEST_CASE("io: a read on a number reused by a blocking pipe ends by its deadline", "[io]") {
  int num = -1;
  char c;
  SECTION("the old file was a pipe that io had waited on") {
    fd_pair old;
    ueq::test::make_pipe(old);
    REQUIRE(io::read(old.a, &c, 1, deadline_after_ms(20)).error() == std::errc::timed_out);
    num = old.a;
    old.a = -1;  // closed by the dup2 below
  }
  SECTION("the old file was a socket that io had waited on") {
    fd_pair old;
    ueq::test::make_socketpair(old);
    REQUIRE(io::read(old.a, &c, 1, deadline_after_ms(20)).error() == std::errc::timed_out);
    num = old.a;
    old.a = -1;
  }
  SECTION("the old file was a regular file that io had read") {
    const int f = temp_file();
    REQUIRE(*io::read(f, &c, 1, deadline_after_ms(1000)) == 1);
    num = f;
  }
  blocking_pipe fresh(num, /*read_end_at_num=*/true);
  result<std::size_t> r = errno_code(0);
  const bool in_time = returns_within(
      3000ms, [&] { r = io::read(num, &c, 1, deadline_after_ms(200)); },
      [&] { (void)!::write(fresh.wr, "x", 1); });
  REQUIRE(in_time);
  REQUIRE(r.error() == std::errc::timed_out);
  // The new file works once it has data.
  REQUIRE(::write(fresh.wr, "y", 1) == 1);
  iovec v{&c, 1};
  REQUIRE(*io::readv(num, &v, 1, deadline_after_ms(10000)) == 1);
  REQUIRE(c == 'y');
}

// A terminal refuses RWF_NOWAIT, so io sets O_NONBLOCK on it per call. A
// pipe that takes its number behind ueq's back must not get the flag: its
// open file description is shared with whoever else holds the pipe, and a
// plain blocking read there would fail with EAGAIN. (Sanitizer builds set
// the flag on every file io waits on, pipes included: the header says so.)
TEST_CASE("io: a pipe that takes a terminal's number keeps its blocking mode", "[io]") {
  int master = -1, num = -1;
  if (!ueq::test::open_pty(master, num)) {
    WARN("no pseudo-terminals here: skipping");
    SUCCEED("skipped: no pseudo-terminals");
    return;
  }
  char c;
  REQUIRE(io::read(num, &c, 1, deadline_after_ms(20)).error() == std::errc::timed_out);
  REQUIRE((::fcntl(num, F_GETFL) & O_NONBLOCK) != 0);  // the terminal took the flag
  blocking_pipe fresh(num, /*read_end_at_num=*/true);
  REQUIRE(::write(fresh.wr, "y", 1) == 1);
  REQUIRE(*io::read(num, &c, 1, deadline_after_ms(10000)) == 1);
  REQUIRE(c == 'y');
  if (!ueq::test::kSanitized) REQUIRE((::fcntl(num, F_GETFL) & O_NONBLOCK) == 0);
  ::close(master);
}

TEST_CASE("io: a write on a number reused by a full blocking pipe ends by its deadline", "[io]") {
  fd_pair old;
  ueq::test::make_pipe(old);
  REQUIRE(*io::write(old.b, "o", 1) == 1);
  const int num = old.b;
  old.b = -1;
  blocking_pipe fresh(num, /*read_end_at_num=*/false);
  // Fill it: one write of its whole capacity fits without blocking.
  const int cap = ::fcntl(num, F_GETPIPE_SZ);
  REQUIRE(cap > 0);
  std::vector<char> fill(static_cast<std::size_t>(cap), 'f');
  REQUIRE(::write(num, fill.data(), fill.size()) == cap);
  result<std::size_t> w = errno_code(0);
  const bool in_time = returns_within(
      3000ms, [&] { w = io::write(num, "x", 1, deadline_after_ms(200)); },
      [&] { (void)!::read(fresh.rd, fill.data(), fill.size()); });
  REQUIRE(in_time);
  REQUIRE(w.error() == std::errc::timed_out);
}

TEST_CASE("io: accept on a number reused by a blocking listening socket ends by its deadline",
          "[io]") {
  sockaddr_in old_addr, addr;
  const int num = ueq::test::bound_loopback(SOCK_STREAM, &old_addr);
  REQUIRE(io::accept(num, nullptr, nullptr, SOCK_CLOEXEC, deadline_after_ms(20)).error() ==
          std::errc::timed_out);
  const int l = ueq::test::bound_loopback(SOCK_STREAM, &addr);
  REQUIRE(::dup2(l, num) == num);
  ::close(l);
  REQUIRE((::fcntl(num, F_GETFL) & O_NONBLOCK) == 0);
  result<int> a = errno_code(0);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool in_time = returns_within(
      3000ms, [&] { a = io::accept(num, nullptr, nullptr, SOCK_CLOEXEC, deadline_after_ms(200)); },
      [&] { (void)::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr); });
  if (a) ::close(*a);
  ::close(client);
  (void)ueq::close_fd(num);
  REQUIRE(in_time);
  REQUIRE(a.error() == std::errc::timed_out);
}

TEST_CASE("io: a uthread's read on a reused number does not stall its vcore", "[io]") {
  fd_pair old;
  ueq::test::make_pipe(old);
  char c;
  REQUIRE(io::read(old.a, &c, 1, deadline_after_ms(20)).error() == std::errc::timed_out);
  const int num = old.a;
  old.a = -1;
  blocking_pipe fresh(num, /*read_end_at_num=*/true);
  std::atomic<int> err{0};
  std::atomic<bool> other_ran_first{false};
  const bool in_time = returns_within(
      5000ms,
      [&] {
        (void)ueq::run(
            [&] {
              // Queued on the only vcore behind the reader: it runs while
              // the reader waits, unless the reader blocks the vcore.
              std::atomic<bool> other_ran{false};
              auto h = ueq::spawn([&] { other_ran.store(true); });
              auto r = io::read(num, &c, 1, deadline_after_ms(200));
              other_ran_first.store(other_ran.load());
              err.store(r ? 0 : r.error().value());
              if (h) (void)h->join();
            },
            {.vcores = 1});
      },
      [&] { (void)!::write(fresh.wr, "x", 1); });
  REQUIRE(in_time);
  REQUIRE(err.load() == ETIMEDOUT);
  REQUIRE(other_ran_first.load());
}

TEST_CASE("io: a number reused by a regular file is read and written plainly", "[io]") {
  fd_pair old;
  ueq::test::make_socketpair(old);
  char c;
  REQUIRE(io::read(old.a, &c, 1, deadline_after_ms(20)).error() == std::errc::timed_out);
  const int num = old.a;
  old.a = -1;
  const int f = temp_file();
  REQUIRE(::dup2(f, num) == num);
  ::close(f);
  char buf[3] = {};
  REQUIRE(*io::read(num, buf, sizeof buf, deadline_after_ms(10000)) == 3);
  REQUIRE(std::string(buf, 3) == "abc");
  REQUIRE(*io::write(num, "de", 2, deadline_after_ms(10000)) == 2);
  REQUIRE(::lseek(num, 0, SEEK_SET) == 0);
  char all[5] = {};
  REQUIRE(*io::read(num, all, sizeof all, deadline_after_ms(10000)) == 5);
  REQUIRE(std::string(all, 5) == "abcde");
  REQUIRE(io::close(num).ok());
}
