// evq_two_queues: a uthread blocks on two event queues at once, with no fd
// involved. One is a timer queue: an ADD-mode CEQ into which a ticker
// uthread, sleeping on the runtime's timers, posts a tick every 5 ms; ticks
// that pile up while nobody looks coalesce into one message carrying their
// count. The other is a message queue of commands, where every command
// arrives on its own. block_on returns whichever has something first; it
// parks only the calling uthread, so the ticker and the commander go on
// running on the same vcore.
#include <atomic>
#include <chrono>
#include <cstdio>

#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/uthread/uthread.hpp"

namespace {
enum : std::uint32_t { kTick = 0, kPrint = 1, kQuit = 2 };
constexpr auto kTickPeriod = std::chrono::milliseconds(5);
}  // namespace

int main() {
  auto ticks = ueq::event_queue::create_ceq({.merge = ueq::ceq_merge::add, .ring_size = 4},
                                            {.name = "ticks"});
  auto commands = ueq::event_queue::create_messages({.name = "commands"});
  if (!ticks || !commands) return 1;

  std::uint64_t total_ticks = 0, wakeups = 0, posted_ticks = 0;
  int status = 0;
  auto ran = ueq::run(
      [&] {
        std::atomic<bool> done{false};
        // The timer queue's producer: a tick per period, on absolute
        // deadlines so the rate does not drift.
        auto ticker = ueq::spawn([&] {
          ueq::mono_ns next = ueq::monotonic_now();
          while (!done.load(std::memory_order_relaxed)) {
            next += std::chrono::nanoseconds(kTickPeriod).count();
            ueq::this_uthread::sleep_until(next);
            (void)(*ticks)->post(kTick, 1);  // ADD: the consumer sees how many
            ++posted_ticks;
          }
        });
        auto commander = ueq::spawn([&] {
          for (std::uint64_t i = 0; i < 3; ++i) {
            ueq::this_uthread::sleep_for(std::chrono::milliseconds(30));  // pacing the demo
            (void)(*commands)->post({.id = kPrint, .bits = i});
          }
          (void)(*commands)->post({.id = kQuit});
        });
        for (;;) {
          auto r = ueq::block_on({ticks->get(), commands->get()}, ueq::deadline_after_ms(1000));
          if (!r) {
            std::printf("block_on: %s\n", r.error().message().c_str());
            status = 1;
            break;
          }
          ++wakeups;
          if (r->queue == ticks->get()) {
            total_ticks += r->msg.bits;  // ticks since the last harvest
            continue;
          }
          if (r->msg.id == kQuit) break;
          std::printf("command %llu after %llu ticks\n", (unsigned long long)r->msg.bits,
                      (unsigned long long)total_ticks);
        }
        done.store(true, std::memory_order_relaxed);
        if (ticker) (void)ticker->join();
        if (commander) (void)commander->join();
        // Ticks posted after the last harvest are still in the queue.
        ueq::event_msg rest;
        while ((*ticks)->try_get(rest))
          total_ticks += rest.bits;
      },
      {.vcores = 1});
  if (!ran) {
    std::printf("ueq::run: %s\n", ran.error().message().c_str());
    return 1;
  }
  std::printf("%llu ticks posted, %llu seen in %llu wakeups (nothing lost: %s); tick queue: %s",
              (unsigned long long)posted_ticks, (unsigned long long)total_ticks,
              (unsigned long long)wakeups, posted_ticks == total_ticks ? "yes" : "NO",
              (*ticks)->dump().c_str());
  return status != 0 || posted_ticks != total_ticks;
}
