// ueq-run: runs a program with the epoll facade preloaded.
//
//   ueq-run PROGRAM [ARGS...]
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
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fprintf(stderr,
                 "usage: ueq-run PROGRAM [ARGS...]\n"
                 "Runs PROGRAM with ueq's epoll facade (%s) preloaded.\n",
                 kLib);
    return argc < 2 ? 2 : 0;
  }
  const std::string lib = find_library();
  if (lib.empty()) {
    std::fprintf(stderr, "ueq-run: cannot find %s (set UEQ_PRELOAD_DIR)\n", kLib);
    return 127;
  }
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) preload += std::string(":") + old;
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
  ::execvp(argv[1], argv + 1);
  std::fprintf(stderr, "ueq-run: %s: %s\n", argv[1], std::strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
