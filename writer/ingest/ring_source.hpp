// The writer's side of the producer rings (shm/ring.hpp): rings handed over the ingest socket
// are attached here, drained by the apply loop, and released once their producer has hung up
// and everything it published is applied.
//
// Per poll and ring: PC1 read the tail (range-checked), PC2 copy up to the budget of messages out
// and decode the copies (a bad one is refused, counted and its error kept), PC3 apply them in
// order (runs of upserts through Writer::upsert_batch with the producer's claimed key hashes,
// everything else through the CommandExecutor), PC4 publish head, PC5 publish how far Redis has
// acknowledged, and wake a producer that waits. Each ring's counters and last error are mirrored
// into the segment's producer table for poscache-inspect.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shm/ring.hpp"
#include "writer/ingest/ring_codec.hpp"
#include "writer/ingest/source.hpp"

namespace poscache::ingest {

class RingSource final : public Source {
 public:
  static constexpr std::size_t kMaxRings = shm::kMaxProducers;
  RingSource(Writer& writer, LogSink log);
  ~RingSource() override;

  // Maps the ring in `fd` (the caller keeps ownership of fd) for the connection `conn`. Returns
  // "" or why the ring was refused (bad magic, size, capacity; too many producers).
  std::string attach(int fd, std::uint64_t conn, pid_t pid, uid_t uid);
  // The connection hung up: the producer is gone (or will reconnect with the same ring). Its
  // ring is drained and then released.
  void hang_up(std::uint64_t conn);

  std::size_t poll(CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override { return "rings"; }
  [[nodiscard]] SourceCounters counters() const override { return counters_; }
  [[nodiscard]] std::size_t rings() const noexcept { return rings_.size(); }

 public:
  // What put_outcome needs of a ring.
  struct RingView {
    shm::RingMessage* msgs;
    std::uint64_t* outcomes;
    std::uint64_t capacity;
  };

 private:
  struct Ring {
    shm::RingHeader* h = nullptr;
    shm::RingMessage* msgs = nullptr;
    std::uint64_t* outcomes = nullptr;  // shm/ring.hpp, OUTCOMES
    std::size_t bytes = 0;
    std::uint64_t capacity = 0;
    std::uint64_t head = 0;  // the writer's own copy: never read back from the ring
    std::uint64_t synced = 0;
    std::uint64_t rejected = 0;
    int table_id = -1;
    dev_t dev = 0;      // the ring's identity (fstat of its descriptor): the same ring handed
    ino_t ino = 0;      //   over again by a reconnecting producer is recognised
    bool gone = false;  // the producer hung up
    std::string name;
    pid_t pid = 0;
    std::deque<std::pair<std::uint64_t, std::uint64_t>> unsynced;  // (seq, Redis ticket)
    ProducerCounts published;  // what the producer table shows now
    // The refusal log's window (log_refusal): lines logged in it, refusals not logged, the last.
    std::int64_t log_window_start = 0;
    std::uint32_t logged_in_window = 0;
    std::uint64_t unlogged = 0;
    std::string last_unlogged;
  };
  static constexpr std::uint32_t kLoggedPerWindow = 10;
  static constexpr std::int64_t kLogWindowNs = 10'000'000'000;
  static RingView view(const Ring& r) { return {r.msgs, r.outcomes, r.capacity}; }
  void drop(Ring& r);
  void apply_group(Ring& r, CommandExecutor& exec, std::uint64_t seq, std::size_t first,
                   std::size_t count);
  void log_refusal(Ring& r, const std::string& text);
  void flush_refusal_log(Ring& r, std::int64_t now);
  std::size_t drain(Ring& r, CommandExecutor& exec, std::size_t budget);
  void publish_synced(Ring& r);
  void refuse(Ring& r, std::uint64_t seq, const std::string& why);
  void note_refusal(Ring& r, std::uint64_t seq, const std::string& why);
  void release(std::uint64_t conn, const char* why);

  Writer& writer_;
  LogSink log_;
  SourceCounters counters_;
  SlotMasks slots_;  // the value slots of each namespace's fields (text fields span several)
  std::map<std::uint64_t, Ring> rings_;  // by connection id
  // Scratch, reused: no allocation per poll.
  std::vector<shm::RingMessage> copies_;
  std::vector<Update> updates_;
  std::vector<std::uint64_t> hashes_;
  std::vector<ApplyResult> results_;
};

}  // namespace poscache::ingest
