// evq_two_queues: one thread blocks on two event queues at once, with no fd
// involved: a "timer" queue (an ADD-mode CEQ into which a ticker thread
// posts ticks, which coalesce into counts) and a message queue of commands
// (every command arrives). block_on returns whichever has something first.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "ueq/ceq/block_on.hpp"

int main() {
  auto ticks = ueq::event_queue::create_ceq({.merge = ueq::ceq_merge::add, .ring_size = 4},
                                            {.name = "ticks"});
  auto commands = ueq::event_queue::create_messages({.name = "commands"});
  if (!ticks || !commands) return 1;
  enum : std::uint32_t { kTick = 0, kPrint = 1, kQuit = 2 };

  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done.load()) {
      (void)(*ticks)->post(kTick, 1);  // coalesces: the consumer sees how many
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the tick period
    }
  });
  std::thread commander([&] {
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // pacing the demo
      (void)(*commands)->post({.id = kPrint, .bits = static_cast<std::uint64_t>(i)});
    }
    (void)(*commands)->post({.id = kQuit});
  });

  std::uint64_t total_ticks = 0, wakeups = 0;
  for (;;) {
    auto r = ueq::block_on({ticks->get(), commands->get()}, ueq::deadline_after_ms(1000));
    if (!r) {
      std::printf("block_on: %s\n", r.error().message().c_str());
      break;
    }
    ++wakeups;
    if (r->queue == ticks->get()) {
      total_ticks += r->msg.bits;  // ADD merge: ticks since the last harvest
      continue;
    }
    if (r->msg.id == kQuit) break;
    std::printf("command %llu after %llu ticks\n", (unsigned long long)r->msg.bits,
                (unsigned long long)total_ticks);
  }
  done.store(true);
  ticker.join();
  commander.join();
  std::printf("%llu ticks seen in %llu wakeups; tick queue: %s", (unsigned long long)total_ticks,
              (unsigned long long)wakeups, (*ticks)->dump().c_str());
  return 0;
}
