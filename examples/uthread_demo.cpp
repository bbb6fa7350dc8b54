// uthread_demo: a few uthreads share a counter under a ueq::mutex, sleep, and
// are joined; main() enters the runtime with ueq::run.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

#include "ueq/uthread/sync.hpp"
#include "ueq/uthread/uthread.hpp"

int main() {
  auto r = ueq::run(
      [] {
        ueq::mutex m;
        int total = 0;
        std::vector<ueq::uthread_handle> workers;
        for (int i = 0; i < 4; ++i) {
          auto h = ueq::spawn(
              [&, i] {
                for (int k = 0; k < 3; ++k) {
                  ueq::this_uthread::sleep_for(std::chrono::milliseconds(1 + i));
                  std::lock_guard<ueq::mutex> g(m);  // blocks this uthread only
                  total += 1;
                  std::printf("%s: step %d\n", ueq::this_uthread::name(), k);
                }
              },
              {.name = i % 2 ? "odd" : "even"});
          if (!h) {
            std::fprintf(stderr, "spawn: %s\n", h.error().message().c_str());
            return;
          }
          workers.push_back(std::move(*h));
        }
        for (auto& w : workers)
          (void)w.join();
        std::printf("total = %d\n", total);
      },
      {.vcores = 2});
  if (!r) {
    std::fprintf(stderr, "run: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
