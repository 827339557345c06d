// Helpers shared by the tests: unique segment names that are removed afterwards.
#pragma once

#include <unistd.h>

#include <atomic>
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

inline WriterConfig small_config(const std::string& segment, std::uint64_t capacity = 64) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = capacity;
  c.namespaces = {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
  return c;
}

}  // namespace poscache::test
