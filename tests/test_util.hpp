// Helpers shared by the tests: unique segment names that are removed afterwards.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "poscache/schema.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"

namespace poscache::test {

// A segment name unique to this process and call; the destructor removes the segment and its
// lock file, so a failed test leaves nothing behind in /dev/shm.
class ScratchSegment {
 public:
  explicit ScratchSegment(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    name_ =
        "poscache_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    cleanup();
  }
  ~ScratchSegment() { cleanup(); }
  ScratchSegment(const ScratchSegment&) = delete;
  ScratchSegment& operator=(const ScratchSegment&) = delete;
  [[nodiscard]] const std::string& name() const { return name_; }
  void cleanup() const {
    boost::interprocess::shared_memory_object::remove(name_.c_str());
    ::unlink(("/dev/shm/" + name_ + ".lock").c_str());
    ::unlink(("/dev/shm/" + name_ + ".trades").c_str());      // the fill de-duplication window
    ::unlink(("/dev/shm/" + name_ + ".sock").c_str());        // a killed daemon's ingest socket
    ::unlink(("/dev/shm/" + name_ + ".streams").c_str());     // the stream cursor
    ::unlink(("/dev/shm/" + name_ + ".readers").c_str());     // the reader table
    for (const char* f : {".requests", ".refresh", ".wake"})  // read-through (shm/refresh.hpp)
      ::unlink(("/dev/shm/" + name_ + f).c_str());
  }

 private:
  std::string name_;
};

// Forks a child that runs `body` and always ends with _exit: it never returns into gtest (which
// would run the rest of the suite twice) and never runs the parent's atexit handlers. An exception
// in `body` exits 111; otherwise the child exits with what `body` returned.
inline pid_t fork_child(const std::function<int()>& body) {
  const pid_t child = ::fork();
  if (child == 0) {
    int code = 111;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  if (child < 0) throw std::runtime_error("fork failed");
  return child;
}

// Waits for a child and returns its exit code, or 128 + the signal that ended it.
inline int wait_child(pid_t child) {
  int st = 0;
  if (::waitpid(child, &st, 0) != child) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Runs `body` in a forked child and returns the text it produced (for checks that must happen
// in another process: a second writer, a private mount namespace).
inline std::string in_child(const std::function<std::string()>& body) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  const pid_t child = fork_child([&] {
    ::close(pipefd[0]);
    const std::string msg = body();
    [[maybe_unused]] auto n = ::write(pipefd[1], msg.data(), msg.size());
    return 0;
  });
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
  } else if (::mmap(reinterpret_cast<void*>(a), k2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                    fd, 0) == MAP_FAILED) {
    why = std::string("mmap: ") + std::strerror(errno);
  } else if (::madvise(reinterpret_cast<void*>(a), k2M, 25 /* MADV_COLLAPSE */) != 0) {
    why = std::string("MADV_COLLAPSE: ") + std::strerror(errno);
  }
  if (r != MAP_FAILED) ::munmap(r, 2 * k2M);
  ::close(fd);
  return why;
}

// Polls `done` every millisecond until it holds or `limit` passes; returns whether it held. For
// what another thread or process does in its own time: a test waits for it with a generous
// deadline instead of sleeping a fixed time and hoping.
template <class Pred>
bool eventually(Pred&& done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::usleep(1000);
  }
  return true;
}

// A command line run through the shell, stdout and stderr together.
struct CliRun {
  int code;  // exit code, or -1 if it did not exit normally
  std::string out;
};
inline CliRun run_cli(const std::string& command) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + command);
  std::string out;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// Segment `name` mapped read-write behind the writer's back: for hand-built states (a half
// written slot, a corrupt journal). Throws, naming the call, if it cannot be mapped.
class RwMapping {
 public:
  explicit RwMapping(const std::string& name) {
    fd_ = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
    if (fd_ < 0) throw std::runtime_error("shm_open /" + name + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      throw std::runtime_error("fstat /" + name + ": " + std::strerror(errno));
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      ::close(fd_);
      throw std::runtime_error("mmap /" + name + ": " + std::strerror(errno));
    }
    base_ = static_cast<std::byte*>(p);
  }
  ~RwMapping() {
    ::munmap(base_, size_);
    ::close(fd_);
  }
  RwMapping(const RwMapping&) = delete;
  RwMapping& operator=(const RwMapping&) = delete;
  [[nodiscard]] std::byte* base() const { return base_; }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

// The value of an Expected the test knows to be good; a failed test names the error otherwise.
template <class T>
T must(Expected<T> e) {
  if (!e) throw std::runtime_error("expected a value, got: " + e.error());
  return std::move(*e);
}

// Sets (or, with nullopt, unsets) environment variables for one scope and restores what was
// there before, so a failing test leaves no setting behind for the next one.
class EnvGuard {
 public:
  EnvGuard() = default;
  EnvGuard(std::initializer_list<std::pair<std::string, std::optional<std::string>>> vars) {
    for (const auto& [k, v] : vars) set(k, v);
  }
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  void set(const std::string& k, const std::optional<std::string>& v) {
    const char* old = std::getenv(k.c_str());
    saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    if (v)
      ::setenv(k.c_str(), v->c_str(), 1);
    else
      ::unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Where a test cannot run here (no root, a kernel without a feature), it is skipped, except when
// POSCACHE_TESTS_NO_SKIP is set (CI, which runs as root on a kernel that has every feature): a
// skip there would hide a failure, so it fails instead.
inline bool skips_allowed() {
  const char* v = std::getenv("POSCACHE_TESTS_NO_SKIP");
  return v == nullptr || *v == '\0' || std::string(v) == "0";
}
#define POSCACHE_SKIP_OR_FAIL(why)                                                   \
  do {                                                                               \
    if (::poscache::test::skips_allowed()) GTEST_SKIP() << (why);                    \
    FAIL() << "POSCACHE_TESTS_NO_SKIP is set, so this cannot be skipped: " << (why); \
  } while (0)

// A log sink for tests. The writer calls its sink from the apply thread and from the Redis sync
// thread, so a sink must be thread-safe: this one locks.
class LogLines {
 public:
  LogSink sink() {
    return [this](LogLevel, std::string_view m) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(m);
    };
  }
  [[nodiscard]] std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  template <class Pred>
  [[nodiscard]] bool any_of(Pred pred) const {
    const auto l = lines();
    return std::any_of(l.begin(), l.end(), pred);
  }
  void clear() {
    std::lock_guard lock(mu_);
    lines_.clear();
  }
  // Every line, one per line: for a failing assertion's message.
  [[nodiscard]] std::string joined() const {
    std::string s;
    for (const auto& l : lines()) s += l + "\n";
    return s;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

inline WriterConfig small_config(const std::string& segment, std::uint64_t capacity = 64) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = capacity;
  c.namespaces = {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
  return c;
}

// A payload holding only a key (key_hash left 0, as in a journal event): the start of every
// hand-built slot, event and Redis record in the tests.
inline shm::SlotPayload key_payload(std::uint16_t ns, std::string_view account,
                                    std::string_view instrument) {
  shm::SlotPayload p = shm::free_slot_payload();
  p.ns = ns;
  p.account_len = static_cast<std::uint8_t>(account.size());
  std::memcpy(p.account, account.data(), account.size());
  p.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(p.instrument, instrument.data(), instrument.size());
  return p;
}

// An Update of a key, built by hand (not through make_update), setting field 0 to `value0`.
inline Update key_update(NamespaceId ns, std::string_view account, std::string_view instrument,
                         int128 value0) {
  Update u;
  u.ns = ns;
  u.account_len = static_cast<std::uint8_t>(account.size());
  std::memcpy(u.account, account.data(), account.size());
  u.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(u.instrument, instrument.data(), instrument.size());
  u.fields_mask = 1;
  u.values[0] = value0;
  return u;
}

// A segment's bytes in private memory, zeroed, laid out for `capacity`: for the components that
// work on a region of it without sharing it (the journal, the Redis hand-off).
struct PrivateSegment {
  explicit PrivateSegment(std::uint64_t capacity) : g(shm::geometry_for(capacity)) {}
  shm::Geometry g;
  std::unique_ptr<std::byte[]> mem{new std::byte[g.segment_size]()};
  [[nodiscard]] std::byte* base() const { return mem.get(); }
};

}  // namespace poscache::test
