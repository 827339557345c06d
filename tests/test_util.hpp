// Helpers shared by the tests: unique segment names that are removed afterwards.
#pragma once

#include <unistd.h>

#include <sys/wait.h>

#include <atomic>
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

inline WriterConfig small_config(const std::string& segment, std::uint64_t capacity = 64) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = capacity;
  c.namespaces = {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
  return c;
}

}  // namespace poscache::test
