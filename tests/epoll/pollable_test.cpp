// What the kernel's epoll accepts, ueq's accepts: procfs and sysfs files
// that have a poll operation (mounts, mountinfo, sysctl entries, sysfs
// attributes) are added and report their changes (EPOLLPRI|EPOLLERR) as
// Linux does; files without one give EPERM; O_PATH descriptors give EBADF.
// Each scenario runs on the kernel's epoll and on ueq's; the traces must
// match.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "check_same.hpp"

using ueq::test::check;
using ueq::test::epoll_api;
using ueq::test::run_both;
using ueq::test::trace;

namespace {

// The first sysfs attribute of these that can be opened, or "".
std::string sysfs_attribute() {
  for (const char* p :
       {"/sys/kernel/mm/transparent_hugepage/enabled", "/sys/devices/system/cpu/online",
        "/sys/kernel/kexec_loaded", "/sys/power/state"}) {
    const int fd = ::open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::close(fd);
      return p;
    }
  }
  return "";
}

epoll_event ev(std::uint32_t events, std::uint64_t data) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = data;
  return e;
}

// A scratch directory, removed with its contents' names.
struct scratch_dir {
  std::string path;
  scratch_dir() {
    char tmpl[] = "/tmp/ueq-pollable-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~scratch_dir() {
    (void)::unlink((path + "/fifo").c_str());
    (void)::rmdir((path + "/mnt").c_str());
    (void)::rmdir(path.c_str());
  }
};

}  // namespace

TEST_CASE("pollable: procfs and sysfs files are added; files without poll give EPERM", "[epoll]") {
  const std::string sysfs = sysfs_attribute();
  if (sysfs.empty()) WARN("no sysfs attribute to open here: that case is left out");
  check("ADD by file kind", [&](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    std::vector<std::pair<std::string, int>> files;
    auto open_as = [&](const std::string& label, const char* path, int flags) {
      const int fd = ::open(path, flags | O_CLOEXEC);
      REQUIRE(fd >= 0);
      files.emplace_back(label, fd);
    };
    open_as("/proc/self/mounts", "/proc/self/mounts", O_RDONLY);
    open_as("/proc/self/mountinfo", "/proc/self/mountinfo", O_RDONLY);
    open_as("sysctl kernel/hostname", "/proc/sys/kernel/hostname", O_RDONLY);
    if (!sysfs.empty()) open_as("sysfs attribute", sysfs.c_str(), O_RDONLY);
    open_as("regular file on disk", "/proc/self/exe", O_RDONLY);
    open_as("directory", "/", O_RDONLY | O_DIRECTORY);
    open_as("/dev/null", "/dev/null", O_RDWR);
    const int memfd = ::memfd_create("ueq-pollable", MFD_CLOEXEC);
    REQUIRE(memfd >= 0);
    files.emplace_back("memfd", memfd);
    for (std::size_t i = 0; i < files.size(); ++i) {
      epoll_event x = ev(EPOLLIN | EPOLLPRI, i);
      t.rc("ADD " + files[i].first, api.ctl(e, EPOLL_CTL_ADD, files[i].second, &x));
    }
    epoll_event out[16];
    t.wait("wait", api.wait(e, out, 16, 0), out);
    // MOD and DEL of an accepted procfs file.
    epoll_event x = ev(EPOLLPRI, 0);
    t.rc("MOD mounts", api.ctl(e, EPOLL_CTL_MOD, files[0].second, &x));
    t.wait("wait after MOD to PRI only", api.wait(e, out, 16, 0), out);
    t.rc("DEL mounts", api.ctl(e, EPOLL_CTL_DEL, files[0].second, nullptr));
    for (auto& f : files)
      api.close(f.second);
    api.close(e);
  });
}

TEST_CASE("pollable: O_PATH descriptors give EBADF, as target and as epoll fd", "[epoll]") {
  scratch_dir dir;
  const std::string fifo = dir.path + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check("O_PATH", [&](const epoll_api& api, trace& t) {
    const int e = api.create1(EPOLL_CLOEXEC);
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    for (const char* path :
         {"/proc/self/exe", "/", fifo.c_str(), "/dev/null", "/proc/self/mounts"}) {
      const int fd = ::open(path, O_PATH | O_CLOEXEC);
      REQUIRE(fd >= 0);
      epoll_event x = ev(EPOLLIN, 1);
      const std::string what = path == fifo ? std::string("fifo") : std::string(path);
      t.rc("ADD O_PATH " + what, api.ctl(e, EPOLL_CTL_ADD, fd, &x));
      t.rc("DEL O_PATH " + what, api.ctl(e, EPOLL_CTL_DEL, fd, nullptr));
      t.rc("ctl on O_PATH " + what + " as epoll fd", api.ctl(fd, EPOLL_CTL_ADD, p[0], &x));
      epoll_event out[1];
      t.rc("wait on O_PATH " + what + " as epoll fd", api.wait(fd, out, 1, 0));
      api.close(fd);
    }
    api.close(p[0]);
    api.close(p[1]);
    api.close(e);
  });
}

namespace {

// The change scenario (run in a child with its own mount and UTS
// namespaces): a mount and sethostname() make /proc/self/mounts,
// mountinfo and kernel/hostname report EPOLLPRI|EPOLLERR once each.
// Waits up to 5 s for events, then takes whatever else is ready at once:
// the result of a change, however the waits divide it.
void wait_change(const epoll_api& api, trace& t, const std::string& label, int e) {
  epoll_event out[16];
  int n = api.wait(e, out, 8, 5000);
  if (n > 0) {
    const int more = api.wait(e, out + n, 8, 0);
    if (more > 0) n += more;
  }
  t.wait(label, n, out);
}

void changes(const epoll_api& api, trace& t, const std::string& mnt) {
  const int e = api.create1(EPOLL_CLOEXEC);
  const int mounts = ::open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
  const int info = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  const int host = ::open("/proc/sys/kernel/hostname", O_RDONLY | O_CLOEXEC);
  epoll_event x = ev(EPOLLPRI, 1);
  t.rc("ADD mounts PRI", api.ctl(e, EPOLL_CTL_ADD, mounts, &x));
  x = ev(EPOLLIN | EPOLLPRI | EPOLLET, 2);
  t.rc("ADD mountinfo IN|PRI|ET", api.ctl(e, EPOLL_CTL_ADD, info, &x));
  x = ev(EPOLLPRI, 3);
  t.rc("ADD hostname PRI", api.ctl(e, EPOLL_CTL_ADD, host, &x));
  epoll_event out[8];
  t.wait("at first", api.wait(e, out, 8, 0), out);
  t.rc("nothing more", api.wait(e, out, 8, 0));
  t.rc("mount", ::mount("none", mnt.c_str(), "tmpfs", 0, nullptr));
  wait_change(api, t, "after a mount", e);
  t.rc("reported once", api.wait(e, out, 8, 0));
  t.rc("sethostname", ::sethostname("ueq-a", 5));
  wait_change(api, t, "after sethostname", e);
  t.rc("reported once", api.wait(e, out, 8, 0));
  t.rc("umount", ::umount(mnt.c_str()));
  t.rc("sethostname", ::sethostname("ueq-b", 5));
  wait_change(api, t, "after umount and sethostname", e);
  t.rc("reported once", api.wait(e, out, 8, 0));
  api.close(mounts);
  api.close(info);
  api.close(host);
  api.close(e);
}

}  // namespace

TEST_CASE("pollable: changes of procfs files are reported as EPOLLPRI|EPOLLERR, once", "[epoll]") {
  scratch_dir dir;
  const std::string mnt = dir.path + "/mnt";
  REQUIRE(::mkdir(mnt.c_str(), 0700) == 0);
  int pipefd[2];
  REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child needs its own mount and UTS namespaces (root, or a user
    // namespace); without them it exits 77 and the case is skipped.
    ::close(pipefd[0]);
    if (::unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      ::_exit(77);
    trace k, u;
    changes(ueq::test::kernel_api(), k, mnt);
    changes(ueq::test::ueq_api(), u, mnt);
    const std::string s = k.str() + '\0' + u.str();
    const char* at = s.data();
    for (std::size_t left = s.size(); left > 0;) {
      const ssize_t w = ::write(pipefd[1], at, left);
      if (w <= 0) ::_exit(3);
      at += w;
      left -= static_cast<std::size_t>(w);
    }
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string got;
  char buf[4096];
  for (ssize_t r; (r = ::read(pipefd[0], buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<std::size_t>(r));
  ::close(pipefd[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    WARN("no mount/UTS namespace for the child here (needs root): case skipped");
    return;
  }
  REQUIRE(WEXITSTATUS(status) == 0);
  const auto cut = got.find('\0');
  REQUIRE(cut != std::string::npos);
  const std::string k = got.substr(0, cut), u = got.substr(cut + 1);
  INFO("--- kernel ---\n" << k << "--- ueq ---\n" << u);
  // The scenario shows something: the kernel reported the changes.
  REQUIRE(k.find("1=PRI|ERR") != std::string::npos);
  REQUIRE(k.find("3=PRI|ERR") != std::string::npos);
  REQUIRE(k == u);
}
