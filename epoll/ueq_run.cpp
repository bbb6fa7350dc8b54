// ueq-run: runs a program with the epoll facade preloaded.
//
//   ueq-run [--stats] [--] PROGRAM [ARGS...]     (ueq-run --help says more)
//
// Finds libueq-epoll-preload.so next to this executable (the build tree),
// then in UEQ_PRELOAD_DIR, then in the install directory, prepends it to
// LD_PRELOAD and executes PROGRAM (looked up on PATH). The program's exit
// status is its own; ueq-run prints only its own usage errors.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#ifndef UEQ_INSTALL_LIBDIR
#define UEQ_INSTALL_LIBDIR "/usr/local/lib"
#endif

namespace {
constexpr const char* kLib = "libueq-epoll-preload.so";

bool exists(const std::string& p) {
  return ::access(p.c_str(), R_OK) == 0;
}

std::string find_library() {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.erase(dir.rfind('/'));
    for (const char* rel : {"/", "/../lib/", "/../epoll/"})
      if (exists(dir + rel + kLib)) return dir + rel + kLib;
  }
  if (const char* d = std::getenv("UEQ_PRELOAD_DIR"))
    if (exists(std::string(d) + "/" + kLib)) return std::string(d) + "/" + kLib;
  const std::string installed = std::string(UEQ_INSTALL_LIBDIR) + "/" + kLib;
  return exists(installed) ? installed : "";
}

constexpr const char* kHelp =
    "usage: ueq-run [--stats] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM with ueq's epoll facade preloaded (%s, prepended to\n"
    "LD_PRELOAD), so its epoll sets are served by ueq's event queues instead of\n"
    "the kernel's epoll. The program's exit status is its own.\n"
    "\n"
    "Intercepted: epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait,\n"
    "epoll_pwait2 (served by ueq), and close, dup, dup2, dup3, fork (watched, so\n"
    "registrations follow the program's descriptors).\n"
    "Not intercepted: poll, select, ppoll, io_uring, and raw system calls (a\n"
    "program that uses only these runs exactly as without ueq-run), nor\n"
    "statically linked programs. See docs/guide.md, \"epoll compatibility\",\n"
    "for the known differences from the kernel's epoll.\n"
    "\n"
    "Options:\n"
    "  --stats   at exit, each process prints to stderr what reached ueq: sets\n"
    "            made, ctl calls by op, waits and events returned, calls passed\n"
    "            to the kernel; or a line saying no epoll call reached ueq\n"
    "            (nothing from a process that exits with _exit or a signal, or\n"
    "            has closed its stderr: UEQ_STATS=PATH writes to a file)\n"
    "  --help    this text\n"
    "\n"
    "Environment:\n"
    "  UEQ_STATS=stderr|PATH  the --stats summary (to a file: opened at exit,\n"
    "                         appended to)\n"
    "  UEQ_LOG=stderr|PATH    diagnostics: sets made and closed, entries added,\n"
    "                         numbers found closed behind ueq's back, fork\n"
    "  UEQ_LOG_LEVEL=2        with UEQ_LOG: every ctl and every wait's result too\n"
    "  UEQ_BACKEND=io_uring   the host poller on io_uring (default: epoll)\n"
    "  UEQ_PRELOAD_DIR=DIR    where to find %s if not next to\n"
    "                         ueq-run or in %s\n";
}  // namespace

int main(int argc, char** argv) {
  int first = 1;
  bool stats = false;
  for (; first < argc && argv[first][0] == '-'; ++first) {
    const char* a = argv[first];
    if (!std::strcmp(a, "--")) {
      ++first;
      break;
    }
    if (!std::strcmp(a, "--help") || !std::strcmp(a, "-h")) {
      std::printf(kHelp, kLib, kLib, UEQ_INSTALL_LIBDIR);
      return 0;
    }
    if (!std::strcmp(a, "--stats")) {
      stats = true;
      continue;
    }
    std::fprintf(stderr, "ueq-run: unknown option %s (see ueq-run --help)\n", a);
    return 2;
  }
  if (first >= argc) {
    std::fprintf(stderr, "usage: ueq-run [--stats] [--] PROGRAM [ARGS...] (see ueq-run --help)\n");
    return 2;
  }
  const std::string lib = find_library();
  if (lib.empty()) {
    std::fprintf(stderr, "ueq-run: cannot find %s (set UEQ_PRELOAD_DIR)\n", kLib);
    return 127;
  }
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) preload += std::string(":") + old;
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
  if (stats) ::setenv("UEQ_STATS", "stderr", 1);
  ::execvp(argv[first], argv + first);
  std::fprintf(stderr, "ueq-run: %s: %s\n", argv[first], std::strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
