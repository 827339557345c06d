// The HTTP admin endpoints' way to the table: the apply loop is the only thread that writes it,
// so an HTTP thread hands its command (an invalidation) over and waits for the result. The loop
// polls this like any source; with nothing queued that is one relaxed load.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "writer/ingest/source.hpp"

namespace poscache::http {

class AdminQueue final : public ingest::Source {
 public:
  // HTTP thread: runs `c` on the apply loop. No result if the loop did not take it within
  // `timeout` or has stopped: it is then withdrawn, never applied later. Once taken, it is
  // waited for.
  struct Outcome {
    std::optional<ingest::CommandResult> result;  // nullopt: not run
    bool stopping = false;                        // not run because the loop has stopped
  };
  Outcome run(ingest::Command c, std::chrono::milliseconds timeout);

  // The loop has stopped: queued and later requests answer nullopt at once.
  void shut_down();

  // Apply loop.
  std::size_t poll(ingest::CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override { return "http admin"; }
  [[nodiscard]] ingest::SourceCounters counters() const override;

 private:
  struct Job {
    ingest::Command command;
    std::optional<ingest::CommandResult> result;
    bool taken = false;
  };
  mutable std::mutex m_;
  std::condition_variable done_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::atomic<std::size_t> queued_{0};
  bool shut_down_ = false;           // under m_
  ingest::SourceCounters counters_;  // under m_
};

}  // namespace poscache::http
