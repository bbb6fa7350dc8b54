// Deferred reclamation (epochs) and the intrusive refcount.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "support.hpp"
#include "ueq/runtime/epoch.hpp"
#include "ueq/runtime/refcount.hpp"

namespace {
std::atomic<int> g_freed{0};
void count_free(void* p) noexcept {
  delete static_cast<int*>(p);
  g_freed.fetch_add(1);
}
struct node : ueq::refcounted {
  int v = 0;
};
}  // namespace

TEST_CASE("an object retired while a reader is pinned is not freed until it unpins", "[epoch]") {
  g_freed = 0;
  ueq::epoch_domain ed;
  std::atomic<bool> pinned{false}, release{false};
  std::thread reader([&] {
    auto g = ed.pin();
    pinned = true;
    ueq::test::wait_until([&] { return release.load(); });
  });
  REQUIRE(ueq::test::wait_until([&] { return pinned.load(); }));
  ed.retire(new int(1), &count_free);
  for (int i = 0; i < 10; ++i)
    ed.reclaim();
  CHECK(g_freed.load() == 0);
  CHECK(ed.pending() == 1);
  release = true;
  reader.join();
  for (int i = 0; i < 3; ++i)
    ed.reclaim();
  CHECK(g_freed.load() == 1);
  CHECK(ed.pending() == 0);
}

TEST_CASE("concurrent readers never see a freed object", "[epoch]") {
  g_freed = 0;
  ueq::epoch_domain ed;
  std::atomic<int*> shared{new int(0)};
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        auto g = ed.pin();
        int* p = shared.load(std::memory_order_acquire);
        if (*p < 0) bad.fetch_add(1);  // a freed int reads as garbage under ASan
      }
    });
  const int iters = static_cast<int>(ueq::test::scaled(20000));
  for (int i = 1; i <= iters; ++i) {
    int* old = shared.exchange(new int(i), std::memory_order_acq_rel);
    ed.retire(old, &count_free);
    if (i % 16 == 0) ed.reclaim();
  }
  stop = true;
  for (auto& t : readers)
    t.join();
  for (int i = 0; i < 3; ++i)
    ed.reclaim();
  CHECK(bad.load() == 0);
  CHECK(g_freed.load() == iters);
  delete shared.load();
}

TEST_CASE("the last put runs the swapped-in release function exactly once", "[refcount]") {
  static std::atomic<int> released{0};
  released = 0;
  auto* n = new node;
  n->set_release([](ueq::refcounted* r) noexcept {
    released.fetch_add(1);
    delete static_cast<node*>(r);
  });
  const int threads = 4, per = static_cast<int>(ueq::test::scaled(10000));
  n->get(threads);
  std::atomic<int> early{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < per; ++i) {
        n->get();
        if (n->put()) early.fetch_add(1);
      }
      if (n->put()) early.fetch_add(1);
    });
  for (auto& t : ts)
    t.join();
  CHECK(early.load() == 0);
  CHECK(released.load() == 0);
  CHECK(n->put());
  CHECK(released.load() == 1);
}
