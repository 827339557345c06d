// poscache — a producer: a process that feeds the running writer (poscache-writer) through a
// shared-memory ring of its own. Link `poscache::producer`: it pulls in no writer code, no Redis
// client and no logging, like the reader.
//
//   auto p = poscache::Producer::open({.segment = "positions", .name = "risk-gw"});
//   auto u = p->make_update("spot", "wallet1", "SOL", {{"qty", "12.5"}});   // checked here
//   poscache::PushResult r = p->push(*u);            // ~tens of ns: no lock, no system call
//   if (r.status == poscache::PushStatus::full) ...  // the writer is behind: retry, or
//   r = p->push(*u, std::chrono::milliseconds(5));   //   wait up to a timeout (every push can)
//   p->wait_applied(r.seq, 1s);                      // visible to readers
//   p->outcome(r.seq);                               // applied, duplicate, stale, rejected...
//   p->wait_synced(r.seq, 1s);                       // and in Redis
//   p->fill("spot", "wallet1", "SOL", poscache::Side::buy, "10", "100.5", "0.05", "T-1001");
//
// The ring is created here (a memfd), handed to the writer over its unix socket
// (/dev/shm/SEGMENT.sock) and only ever read by it: the writer checks everything in it. A
// background thread watches the connection and, if the writer goes away, re-attaches the same
// ring to the next writer, which applies what is still unapplied. Pushes go on meanwhile until the
// ring is full. One thread pushes (single producer); any thread may wait or read stats.
//
// Messages are validated and hashed here, so the writer's apply path does neither for updates
// to positions it holds (it proves the hash against the stored one instead).
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "poscache/error.hpp"
#include "poscache/update.hpp"

namespace poscache {

struct ProducerConfig {
  std::string segment = "poscache";
  std::string name;               // shown by poscache-inspect producers; up to 31 characters
  std::string socket;             // the writer's socket; "" = /dev/shm/<segment>.sock
  std::uint64_t capacity = 4096;  // messages in the ring, a power of two (512 B each)
  std::chrono::milliseconds connect_timeout{2000};  // open() waits this long for the writer
};

enum class PushStatus : std::uint8_t {
  ok,         // in the ring; `seq` is its sequence (per producer, from 1, FIFO)
  full,       // the ring stayed full for the timeout: nothing was queued; counted (the writer
              //   is behind, paused or gone)
  bad_input,  // refused here: error() says why; nothing was queued
  dropped,    // the writer dropped this ring as damaged: error() says why; open a new Producer
};
struct PushResult {
  PushStatus status = PushStatus::bad_input;
  std::uint64_t seq = 0;
};

enum class WaitStatus : std::uint8_t {
  done,  // the writer applied (or Redis holds) the message: see outcome() for what it did
  timeout,
  no_redis,  // wait_synced: this writer does not mirror to Redis
  dropped,   // the ring was dropped as damaged before the message was applied: it never will be
};

// What the writer did with one message (outcome()).
enum class Outcome : std::uint8_t {
  pending,    // not applied yet
  applied,    // applied: visible to readers
  duplicate,  // a fill whose trade id was seen: ignored
  stale,      // an upsert whose source sequence is older than the position's: ignored
  not_found,  // an erase, or a one-account mark, of a position that is not there
  rejected,   // refused by the writer: `why` says why; nothing of it was applied
  unknown,    // older than the ring remembers: the slot has been reused (seq + capacity pushed)
};
std::string_view to_string(Outcome o) noexcept;

struct ProducerStats {
  std::uint64_t pushed = 0;    // messages in the ring so far (the last sequence)
  std::uint64_t applied = 0;   // applied by the writer, visible to readers
  std::uint64_t synced = 0;    // in Redis (0 if the writer does not mirror)
  std::uint64_t rejected = 0;  // refused by the writer (see last_error)
  std::uint64_t full = 0;      // pushes that found the ring full
  bool attached = false;       // a writer consumes the ring now
  bool redis = false;          // the writer mirrors to Redis
  bool dropped = false;        // the writer dropped the ring as damaged (last_error says why)
  std::uint64_t reconnects = 0;
  std::string last_error;  // the writer's last refusal of one of these messages
};

class Producer {
 public:
  // Creates the ring and attaches it to the writer; throws poscache::Error naming what failed
  // (no segment, no writer socket, the writer refused the ring).
  static std::unique_ptr<Producer> open(const ProducerConfig& config);
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // --- building (validated against the segment's schema; errors name the part and value) -----
  Expected<NamespaceId> namespace_id(std::string_view ns) const;
  Expected<Update> make_update(
      std::string_view ns, std::string_view account, std::string_view instrument,
      std::span<const std::pair<std::string_view, std::string_view>> fields,
      std::uint64_t source_seq = 0, UpdateMode mode = UpdateMode::merge) const;
  Expected<Update> make_update(
      std::string_view ns, std::string_view account, std::string_view instrument,
      std::initializer_list<std::pair<std::string_view, std::string_view>> fields,
      std::uint64_t source_seq = 0, UpdateMode mode = UpdateMode::merge) const {
    return make_update(ns, account, instrument, std::span(fields.begin(), fields.size()),
                       source_seq, mode);
  }

  // --- pushing --------------------------------------------------------------------------------
  // Every push takes a timeout: while the ring is full it waits (spinning, then sleeping) up to
  // that long for the writer to make room, then answers `full`. 0 (the default) answers `full`
  // at once. A push that finds room makes no allocation and no system call.
  using Timeout = std::chrono::nanoseconds;
  PushResult push(const Update& update, Timeout timeout = Timeout::zero());
  PushResult fill(std::string_view ns, std::string_view account, std::string_view instrument,
                  Side side, std::string_view qty, std::string_view price,
                  std::string_view fee = "0", std::string_view trade_id = {},
                  Timeout timeout = Timeout::zero());
  // account empty: every account holding the instrument in that namespace.
  PushResult mark(std::string_view ns, std::string_view instrument, std::string_view price,
                  std::string_view account = {}, Timeout timeout = Timeout::zero());
  PushResult add(std::string_view ns, std::string_view account, std::string_view instrument,
                 std::string_view field, std::int64_t by, Timeout timeout = Timeout::zero());
  PushResult reset(std::string_view ns, std::string_view account, std::string_view instrument,
                   std::string_view field, Timeout timeout = Timeout::zero());
  PushResult erase(std::string_view ns, std::string_view account, std::string_view instrument,
                   Timeout timeout = Timeout::zero());
  PushResult invalidate_account(std::string_view account, std::string_view ns = {},
                                Timeout timeout = Timeout::zero());
  PushResult invalidate_namespace(std::string_view ns, Timeout timeout = Timeout::zero());
  // up to 96 characters over a ring
  PushResult invalidate_matching(std::string_view glob, Timeout timeout = Timeout::zero());
  PushResult invalidate_all(Timeout timeout = Timeout::zero());
  // --- batches: commands applied all or nothing, seen whole by snapshot() readers -------------
  //   p->begin_batch();
  //   p->fill("spot", "w1", "SOL", Side::buy, "10", "100", "0.1", "T-7");          // the trade
  //   p->fill("spot", "w1", "USDC", Side::sell, "1000.1", "1", "0", "T-7-cash");   // its cash leg
  //   PushResult r = p->end_batch(1s);   // r.seq: the batch's; outcome(r.seq) says what it did
  // Between begin and end, pushes are staged (ok, seq 0) or refused as usual; end_batch sends
  // nothing if any was refused (bad_input, error() names the command) and otherwise publishes
  // them together, waiting up to `timeout` for room. A batch holds 1 to kMaxBatchCommands
  // commands on one position each (upsert, erase, add, reset, fill, a one-account mark) and needs
  // a ring of at least its size + 1 messages. Command i of the batch is message r.seq + 1 + i.
  // If the writer refuses one, none is applied: outcome(r.seq) is rejected naming it.
  static constexpr std::size_t kMaxBatchCommands = 64;
  void begin_batch();  // throws Error if one is open already
  PushResult end_batch(Timeout timeout = Timeout::zero());
  void abort_batch() noexcept;  // drops what was staged
  [[nodiscard]] bool in_batch() const noexcept;

  // Why the last push was bad_input or dropped.
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

  // --- acknowledgements ------------------------------------------------------------------------
  WaitStatus wait_applied(std::uint64_t seq, std::chrono::nanoseconds timeout) const;
  WaitStatus wait_synced(std::uint64_t seq, std::chrono::nanoseconds timeout) const;
  // What the writer did with message `seq`; `why`, if given, gets a rejection's reason (up to
  // 352 characters). Answers from the message's slot
  // in the ring, so until this producer pushes message seq + capacity; `unknown` after that.
  // Call it from the pushing thread, or while no push runs.
  [[nodiscard]] Outcome outcome(std::uint64_t seq, std::string* why = nullptr) const;
  [[nodiscard]] std::uint64_t applied() const noexcept;  // one load: poll it
  [[nodiscard]] ProducerStats stats() const;

  struct Impl;

 private:
  explicit Producer(std::unique_ptr<Impl> impl);
  PushResult finish(PushResult r);
  std::unique_ptr<Impl> impl_;
  std::string error_;
};

}  // namespace poscache
