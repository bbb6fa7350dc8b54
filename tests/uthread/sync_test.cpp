// Mutex, condition variable, semaphore and rwlock under contention from many
// uthreads on 2 vcores (and plain threads).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <vector>

#include "support.hpp"
#include "ueq/uthread/sync.hpp"
#include "ueq/uthread/uthread.hpp"

using namespace std::chrono_literals;

namespace {
template <class F>
void spawn_join_all(int n, F f) {
  std::vector<ueq::uthread_handle> hs;
  for (int i = 0; i < n; ++i)
    hs.push_back(*ueq::spawn([f, i] { f(i); }));
  for (auto& h : hs)
    (void)h.join();
}
}  // namespace

TEST_CASE("mutex gives mutual exclusion to 64 uthreads on 2 vcores", "[mutex]") {
  const int n = 64, per = static_cast<int>(ueq::test::scaled(2000));
  ueq::mutex m;
  long counter = 0;  // guarded by m, deliberately non-atomic
  std::atomic<int> inside{0}, overlap{0};
  auto r = ueq::run(
      [&] {
        spawn_join_all(n, [&](int i) {
          for (int k = 0; k < per; ++k) {
            std::lock_guard<ueq::mutex> g(m);
            if (inside.fetch_add(1) != 0) overlap.fetch_add(1);
            ++counter;
            if ((k + i) % 7 == 0) ueq::this_uthread::yield();  // hold it across a switch
            inside.fetch_sub(1);
          }
        });
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(overlap.load() == 0);
  CHECK(counter == long{n} * per);
}

TEST_CASE("mutex hands off in FIFO order to waiters", "[mutex]") {
  std::vector<int> order;
  auto r = ueq::run(
      [&] {
        ueq::mutex m;
        m.lock();
        std::vector<ueq::uthread_handle> hs;
        for (int i = 0; i < 8; ++i) {
          hs.push_back(*ueq::spawn([&, i] {
            m.lock();
            order.push_back(i);
            m.unlock();
          }));
          ueq::this_uthread::yield();  // one vcore: it runs and queues on m now
        }
        m.unlock();
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("condvar producer/consumer loses no item with many uthreads on 2 vcores", "[condvar]") {
  const int producers = 8, consumers = 8, per = static_cast<int>(ueq::test::scaled(2000));
  ueq::mutex m;
  ueq::condition_variable not_empty;
  std::deque<int> q;
  int produced_done = 0;
  std::atomic<long> sum{0}, count{0};
  auto r = ueq::run(
      [&] {
        std::vector<ueq::uthread_handle> hs;
        for (int c = 0; c < consumers; ++c)
          hs.push_back(*ueq::spawn([&] {
            std::unique_lock<ueq::mutex> l(m);
            for (;;) {
              not_empty.wait(l, [&] { return !q.empty() || produced_done == producers; });
              if (q.empty()) return;
              int v = q.front();
              q.pop_front();
              l.unlock();
              sum.fetch_add(v);
              count.fetch_add(1);
              l.lock();
            }
          }));
        for (int p = 0; p < producers; ++p)
          hs.push_back(*ueq::spawn([&] {
            for (int k = 1; k <= per; ++k) {
              std::lock_guard<ueq::mutex> g(m);
              q.push_back(k);
              not_empty.notify_one();
            }
            std::lock_guard<ueq::mutex> g(m);
            if (++produced_done == producers) not_empty.notify_all();
          }));
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(count.load() == long{producers} * per);
  CHECK(sum.load() == long{producers} * per * (per + 1) / 2);
}

TEST_CASE("condvar timed wait times out without a notify and not before the deadline",
          "[condvar]") {
  ueq::mono_ns before = 0, after = 0;
  ueq::wait_status st = ueq::wait_status::no_timeout;
  auto r = ueq::run([&] {
    ueq::mutex m;
    ueq::condition_variable cv;
    std::unique_lock<ueq::mutex> l(m);
    before = ueq::monotonic_now();
    st = cv.wait_until(l, before + 20'000'000);
    after = ueq::monotonic_now();
  });
  REQUIRE(r.ok());
  CHECK(st == ueq::wait_status::timeout);
  CHECK(after - before >= 20'000'000);
  CHECK(after - before < 200'000'000 + 20'000'000);
}

TEST_CASE(
    "condvar timed waits racing notifies: every notify wakes a waiter or the waiter "
    "timed out, never both lost",
    "[condvar]") {
  const int iters = static_cast<int>(ueq::test::scaled(500));
  std::atomic<int> stuck{0};
  auto r = ueq::run(
      [&] {
        for (int it = 0; it < iters; ++it) {
          ueq::mutex m;
          ueq::condition_variable cv;
          bool flag = false;
          auto h = ueq::spawn([&] {
            std::unique_lock<ueq::mutex> l(m);
            // Deadline around when the notify lands.
            const ueq::mono_ns d = ueq::monotonic_now() + (it % 5) * 20'000;
            cv.wait_until(l, d, [&] { return flag; });
            // If we timed out, the flag may still be set later: wait untimed.
            cv.wait(l, [&] { return flag; });
          });
          for (int k = 0; k < it % 4; ++k)
            ueq::this_uthread::yield();
          {
            std::lock_guard<ueq::mutex> g(m);
            flag = true;
          }
          cv.notify_one();
          if (h->join()) stuck.fetch_add(1);
        }
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(stuck.load() == 0);
}

TEST_CASE("semaphore bounds concurrency and hands counts to waiters", "[semaphore]") {
  const int n = 32, per = static_cast<int>(ueq::test::scaled(500));
  ueq::semaphore sem(3);
  std::atomic<int> inside{0}, max_inside{0}, total{0};
  auto r = ueq::run(
      [&] {
        spawn_join_all(n, [&](int) {
          for (int k = 0; k < per; ++k) {
            sem.acquire();
            int now = inside.fetch_add(1) + 1;
            int m = max_inside.load();
            while (now > m && !max_inside.compare_exchange_weak(m, now)) {
            }
            ueq::this_uthread::yield();
            inside.fetch_sub(1);
            total.fetch_add(1);
            sem.release();
          }
        });
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(max_inside.load() <= 3);
  CHECK(max_inside.load() >= 1);
  CHECK(total.load() == n * per);
  CHECK(sem.try_acquire());
  CHECK(sem.try_acquire());
  CHECK(sem.try_acquire());
  CHECK_FALSE(sem.try_acquire());
}

TEST_CASE("semaphore acquire_until times out when no count arrives", "[semaphore]") {
  bool got = true;
  ueq::mono_ns waited = 0;
  auto r = ueq::run([&] {
    ueq::semaphore s(0);
    const ueq::mono_ns t0 = ueq::monotonic_now();
    got = s.acquire_until(t0 + 10'000'000);
    waited = ueq::monotonic_now() - t0;
  });
  REQUIRE(r.ok());
  CHECK_FALSE(got);
  CHECK(waited >= 10'000'000);
}

TEST_CASE("rwlock: readers share, writers exclude everyone", "[rwlock]") {
  const int n = 24, per = static_cast<int>(ueq::test::scaled(1000));
  ueq::rwlock rw;
  std::atomic<int> readers{0}, writers{0}, bad{0}, max_readers{0};
  long value = 0;  // written under the write lock
  auto r = ueq::run(
      [&] {
        spawn_join_all(n, [&](int i) {
          for (int k = 0; k < per; ++k) {
            if ((i + k) % 4 == 0) {
              rw.lock();
              if (writers.fetch_add(1) != 0 || readers.load() != 0) bad.fetch_add(1);
              ++value;
              ueq::this_uthread::yield();
              writers.fetch_sub(1);
              rw.unlock();
            } else {
              rw.lock_shared();
              int now = readers.fetch_add(1) + 1;
              int m = max_readers.load();
              while (now > m && !max_readers.compare_exchange_weak(m, now)) {
              }
              if (writers.load() != 0) bad.fetch_add(1);
              ueq::this_uthread::yield();
              readers.fetch_sub(1);
              rw.unlock_shared();
            }
          }
        });
      },
      {.vcores = 2});
  REQUIRE(r.ok());
  CHECK(bad.load() == 0);
  CHECK(max_readers.load() >= 1);
  long expect = 0;
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < per; ++k)
      if ((i + k) % 4 == 0) ++expect;
  CHECK(value == expect);
}

TEST_CASE("rwlock: readers hold it together; a writer waits for all of them", "[rwlock]") {
  int max_readers = 0, readers = 0;
  bool writer_saw_readers = true;
  auto r = ueq::run(
      [&] {
        ueq::rwlock rw;
        std::vector<ueq::uthread_handle> hs;
        for (int i = 0; i < 5; ++i)
          hs.push_back(*ueq::spawn([&] {
            rw.lock_shared();
            max_readers = std::max(max_readers, ++readers);
            ueq::this_uthread::yield();  // one vcore: the others get in meanwhile
            --readers;
            rw.unlock_shared();
          }));
        ueq::this_uthread::yield();  // let all five take it
        rw.lock();
        writer_saw_readers = readers != 0;
        rw.unlock();
        for (auto& h : hs)
          (void)h.join();
      },
      {.vcores = 1});
  REQUIRE(r.ok());
  CHECK(max_readers == 5);
  CHECK_FALSE(writer_saw_readers);
}

TEST_CASE("a plain thread and uthreads contend on one mutex and condvar", "[mutex][condvar]") {
  const int per = static_cast<int>(ueq::test::scaled(2000));
  ueq::mutex m;
  ueq::condition_variable cv;
  int turn = 0;  // 0: plain thread's turn, 1: the uthread's
  int plain_count = 0, uth_count = 0;
  std::atomic<bool> started{false};
  std::thread plain([&] {
    ueq::test::wait_until([&] { return started.load(); });
    for (int k = 0; k < per; ++k) {
      std::unique_lock<ueq::mutex> l(m);
      cv.wait(l, [&] { return turn == 0; });
      ++plain_count;
      turn = 1;
      cv.notify_all();
    }
  });
  auto r = ueq::run(
      [&] {
        started = true;
        for (int k = 0; k < per; ++k) {
          std::unique_lock<ueq::mutex> l(m);
          cv.wait(l, [&] { return turn == 1; });
          ++uth_count;
          turn = 0;
          cv.notify_all();
        }
      },
      {.vcores = 2});
  plain.join();
  REQUIRE(r.ok());
  CHECK(plain_count == per);
  CHECK(uth_count == per);
}
