// Helpers shared by the tests: unique segment names that are removed afterwards.
#pragma once

#include <unistd.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <boost/interprocess/shared_memory_object.hpp>
#include <string>

#include "poscache/schema.hpp"
#include "poscache/writer.hpp"

namespace poscache::test {

// A segment name unique to this process and call; the destructor removes the segment and its
// lock file, so a failed test leaves nothing behind in /dev/shm.
class ScratchSegment {
 public:
  explicit ScratchSegment(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    name_ = "poscache_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    cleanup();
  }
  ~ScratchSegment() { cleanup(); }
  ScratchSegment(const ScratchSegment&) = delete;
  ScratchSegment& operator=(const ScratchSegment&) = delete;
  [[nodiscard]] const std::string& name() const { return name_; }
  void cleanup() const {
    boost::interprocess::shared_memory_object::remove(name_.c_str());
    ::unlink(("/dev/shm/" + name_ + ".lock").c_str());
  }

 private:
  std::string name_;
};

// Runs `body` in a forked child and returns the text it produced (for checks that must happen
// in another process: a second writer, a private mount namespace).
inline std::string in_child(const std::function<std::string()>& body) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    const std::string msg = body();
    [[maybe_unused]] auto n = ::write(pipefd[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  ::waitpid(child, nullptr, 0);
  return out;
}

// Whether this kernel turns tmpfs pages into 2 MiB pages on request (MADV_COLLAPSE: Linux 6.1+,
// and /sys/kernel/mm/transparent_hugepage/shmem_enabled not "deny"), probed with raw system calls
// on a scratch file, independently of the code under test. Empty if it does, else why not.
inline std::string tmpfs_collapse_unsupported() {
  constexpr std::size_t k2M = std::size_t{2} << 20;
  const std::string name = "/poscache_test_probe_" + std::to_string(::getpid());
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return std::string("shm_open: ") + std::strerror(errno);
  ::shm_unlink(name.c_str());
  std::string why;
  // 2 MiB of the file at a 2 MiB-aligned address (virtual address and file offset must agree
  // modulo 2 MiB for a huge page to cover them): reserve 4 MiB, map over its aligned half.
  void* r = ::mmap(nullptr, 2 * k2M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  const auto a = (reinterpret_cast<std::uintptr_t>(r) + k2M - 1) & ~(std::uintptr_t{k2M} - 1);
  if (r == MAP_FAILED || ::ftruncate(fd, k2M) != 0 || ::posix_fallocate(fd, 0, k2M) != 0) {
    why = "cannot set up the probe";
  } else if (::mmap(reinterpret_cast<void*>(a), k2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    why = std::string("mmap: ") + std::strerror(errno);
  } else if (::madvise(reinterpret_cast<void*>(a), k2M, 25 /* MADV_COLLAPSE */) != 0) {
    why = std::string("MADV_COLLAPSE: ") + std::strerror(errno);
  }
  if (r != MAP_FAILED) ::munmap(r, 2 * k2M);
  ::close(fd);
  return why;
}

inline WriterConfig small_config(const std::string& segment, std::uint64_t capacity = 64) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = capacity;
  c.namespaces = {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
  return c;
}

}  // namespace poscache::test
