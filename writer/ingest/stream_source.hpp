// Redis Streams as a source: services in any language publish commands with the redis client
// they already use (XADD, entry format in stream_codec.hpp), and the daemon consumes them with a
// consumer group, applies them through the executor like every other source, and acknowledges
// (XACK) each entry once it is applied.
//
// Two threads, no lock between them:
//   - the stream thread owns a Redis connection. It creates the consumer group if needed
//     (XGROUP CREATE ... MKSTREAM), takes over entries left pending by any other consumer of the
//     group (XAUTOCLAIM), reads its own pending entries from the start (entries a killed writer
//     read but never acknowledged), then new ones (XREADGROUP ... BLOCK). It decodes each entry
//     (the decoder is const and shares nothing) and hands it to the apply loop through a
//     single-producer single-consumer queue (boost::lockfree::spsc_queue);
//   - the apply loop's poll() executes what arrived, moves the stream cursor (stream_cursor.hpp)
//     and hands each entry back through a second queue, with its outcome;
//   - the stream thread then acknowledges the handled entries (one XACK per stream and batch)
//     and copies each refused one to "<stream>:rejected" with its reason, in the same
//     MULTI/EXEC as its XACK: a refused entry is never retried and never lost.
// At most kMaxInFlight entries are between the two threads: the stream thread reads no more
// than there is room for (backpressure reaches Redis as pending entries, nothing is dropped).
//
// Redis unreachable: the stream thread reconnects with backoff and logs once per outage; the
// writer and its other sources are not affected. Entries whose XACK did not go through are
// acknowledged after the reconnect.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer.hpp"
#include "writer/ingest/json_codec.hpp"
#include "writer/ingest/source.hpp"
#include "writer/ingest/stream_codec.hpp"
#include "writer/ingest/stream_cursor.hpp"
#include "writer/net/redis_client.hpp"

namespace poscache::ingest {

struct StreamConfig {
  std::vector<std::string> streams;  // stream keys to consume (empty: no stream source)
  std::string group;                 // consumer group ("" = "poscache:<hostname>:<segment>")
  std::string consumer = "writer";   // this writer's consumer name within the group
  std::string start = "0";  // where a new group starts: "0" the whole stream, "$" new entries
  std::size_t batch = 256;  // entries per XREADGROUP
  std::size_t rejected_maxlen = 100'000;  // XADD <stream>:rejected MAXLEN ~ this
};

// The checks the config file and flags get: stream names, group, start, batch.
Expected<bool> validate(const StreamConfig& config);
// The group a config without one uses.
std::string default_stream_group(const std::string& segment);

class StreamSource final : public Source {
 public:
  static constexpr std::size_t kMaxInFlight = kCursorRejects;  // see stream_cursor.hpp

  // Starts the stream thread. `namespaces` must outlive the source. Throws poscache::Error when
  // the cursor file cannot be opened or a stream key holds another type.
  StreamSource(const StreamConfig& config, const RedisConfig& redis,
               const std::vector<NamespaceSpec>& namespaces, const std::string& segment,
               std::uint64_t generation, LogSink log);
  ~StreamSource() override;  // stops the thread (entries not applied stay pending in Redis)
  StreamSource(const StreamSource&) = delete;
  StreamSource& operator=(const StreamSource&) = delete;

  std::size_t poll(CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override;
  [[nodiscard]] SourceCounters counters() const override { return counters_; }

  // For tests and the stats line: entries acknowledged in Redis so far, entries skipped because
  // a previous writer had handled them (at or below the cursor), and Redis failures seen.
  [[nodiscard]] std::uint64_t acknowledged() const noexcept {
    return acked_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t replayed() const noexcept { return replayed_; }
  [[nodiscard]] std::uint64_t redis_errors() const noexcept {
    return redis_errors_.load(std::memory_order_relaxed);
  }

  struct Entry;  // one stream entry between the two threads (stream_source.cpp)

 private:
  void run(detail::RedisClient& c);  // the stream thread, starting with `c` (maybe closed)
  bool setup(detail::RedisClient& c, bool at_start);
  bool cycle(detail::RedisClient& c);  // one pipelined round trip: acknowledge, read, hand over
  bool lost(detail::RedisClient& c, const char* doing);
  template <class Fn>
  void for_each_stream(const redisReply* reply, Fn&& fn) const;
  std::size_t absorb(const redisReply* reply);
  void hand_over(const redisReply* reply);
  void finish_recovery();
  bool queue_acks(detail::RedisClient& c, std::size_t& replies);
  void log(LogLevel level, const std::string& message) const;
  void sleep_for(std::chrono::milliseconds d) const;

  StreamConfig config_;
  RedisConfig redis_;
  JsonDecoder decoder_;
  StreamCursor cursor_;
  std::vector<std::uint32_t> slots_;  // cursor slot per stream
  LogSink log_;
  boost::lockfree::spsc_queue<Entry*> to_apply_;
  boost::lockfree::spsc_queue<Entry*> handled_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  // Apply loop only.
  SourceCounters counters_;
  std::uint64_t replayed_ = 0;
  // Handled entries waiting for Redis to hold their effects (a writer that mirrors): an entry is
  // acknowledged (XACK) only then, so that a standby taking over after a kill gets every entry
  // whose effect Redis lacks (as pending, XAUTOCLAIM) and refuses the others as stale (their
  // positions' source_seq). Without Redis, or on this segment again, the cursor covers it.
  std::deque<std::pair<Entry*, std::uint64_t>> unsynced_;  // (entry, Redis ticket), in order
  void release_synced(const Writer& writer);
  // Stream thread only.
  std::size_t in_flight_ = 0;               // entries read and not yet acknowledged
  std::vector<std::uint64_t> last_read_;    // highest id handed over, per stream
  std::vector<std::string> pending_from_;   // own-pending read position ("" = done: read ">")
  std::vector<std::uint64_t> redelivered_;  // entries the current pending read handed over
  std::vector<bool> in_recovery_;           // reading our own pending entries since (re)connect
  std::vector<std::size_t> pending_done_;   // streams whose pending read just ended
  detail::Reply unread_;                    // the last read, handed over in the next cycle
  std::size_t unread_count_ = 0;            // entries in unread_, not yet handed over
  std::vector<Entry*> to_ack_;              // handled, acknowledgement not yet confirmed
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<std::uint64_t> redis_errors_{0};
};

}  // namespace poscache::ingest
