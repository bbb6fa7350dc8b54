// The echo load generator and the plain-epoll echo server, shared by
// examples/echo_client, examples/echo_server's baseline mode and
// `ueq-bench echo`, so every server is measured by the same client.
//
// Client: `connections` TCP connections to 127.0.0.1:port. Ping-pong mode:
// each connection sends `message` bytes, waits for all of them to come back,
// and records the round-trip latency; streaming mode: each connection keeps
// up to `window` bytes in flight and reads the echo back. Every payload byte
// is a function of (connection, offset), and the client checks every echoed
// byte: a single wrong or missing byte is an error. The run ends after
// `seconds` or after `requests` round trips (ping-pong), whichever first.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ueq::echo {

struct load_config {
  std::uint16_t port = 0;
  int connections = 100;
  std::size_t message = 64;
  bool streaming = false;
  std::size_t window = 64 * 1024;  // streaming: bytes in flight per connection
  double seconds = 2;
  std::uint64_t requests = 0;  // 0 = until `seconds`
  // Called when the measured window opens (connections made) and closes
  // (the window load_result::seconds covers); either may be empty.
  std::function<void()> on_start, on_stop;
};

struct load_result {
  std::uint64_t requests = 0;  // completed round trips (ping-pong) or messages (streaming)
  std::uint64_t bytes = 0;     // bytes echoed back and verified
  std::uint64_t errors = 0;    // connect failures, resets, wrong bytes
  double seconds = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;  // ping-pong round-trip latency
  std::string error;                          // the first error, if any
  double requests_per_sec() const { return seconds > 0 ? requests / seconds : 0; }
  double mb_per_sec() const { return seconds > 0 ? bytes / seconds / 1e6 : 0; }
};

// Runs the client on the calling thread (one epoll loop for all connections).
load_result run_load(const load_config& cfg);

// A listening socket on 127.0.0.1 (port 0 = any free port); returns the fd
// and writes the port. -1 on error (errno set).
int listen_loopback(std::uint16_t* port, int backlog = 4096);

// What the example servers do at start: listen on 127.0.0.1:port (0 = any
// free port), route SIGINT and SIGTERM to `on_stop`, ignore SIGPIPE, and
// print "listening on PORT" (flushed; spawn_server waits for that line).
// Returns the listening fd, or -1 after printing why (prefixed by `name`).
int start_server(const char* name, std::uint16_t port, void (*on_stop)(int));

// The plain epoll echo server (the baseline): serves `listen_fd` on the
// calling thread until `stop` becomes true (checked every 50 ms).
void run_epoll_server(int listen_fd, const std::atomic<bool>& stop);

// Starts a server program (argv[0] is its path) with its stdout on a pipe
// and waits for its "listening on PORT" line; returns the child's pid and
// writes the port, or -1 if it did not start. The caller kills and reaps it.
int spawn_server(std::vector<std::string> argv, std::uint16_t* port);

// The directory of the running executable (to find the programs built
// beside it).
std::string self_dir();

}  // namespace ueq::echo
