#include "writer/ingest/stream_source.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "writer/net/redis_client.hpp"

namespace poscache::ingest {

using detail::Args;
using detail::RedisClient;
using detail::Reply;
using detail::reply_text;

struct StreamSource::Entry {
  std::uint32_t stream = 0;  // index into config_.streams
  std::uint64_t id = 0;      // packed stream id; 0: the id could not be packed (refused)
  std::string id_text;
  StreamFields fields;
  std::variant<Command, std::string> decoded = std::string();
  bool deleted = false;  // a pending entry deleted from the stream before it was handled
  // Set by the apply loop:
  CommandStatus status = CommandStatus::rejected;
  std::string error;
};

namespace {
bool is_error(const Reply& r, std::string_view prefix) {
  return r->type == REDIS_REPLY_ERROR &&
         std::string_view(r->str, r->len).substr(0, prefix.size()) == prefix;
}

std::string_view str(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return {};
  return {r->str, r->len};
}
}  // namespace

std::string default_stream_group(const std::string& segment) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return std::string("poscache:") + host + ":" + segment;
}

Expected<bool> validate(const StreamConfig& c) {
  if (c.streams.size() > 16)
    return fail("ingest: " + std::to_string(c.streams.size()) + " streams; at most 16");
  for (std::size_t i = 0; i < c.streams.size(); ++i) {
    const std::string& s = c.streams[i];
    if (s.empty() || s.size() > 200)
      return fail("ingest stream name '" + s + "' must be 1 to 200 characters");
    for (std::size_t j = 0; j < i; ++j)
      if (c.streams[j] == s) return fail("ingest stream '" + s + "' is listed twice");
  }
  if (c.group.size() > 200) return fail("ingest stream_group is longer than 200 characters");
  if (c.consumer.empty() || c.consumer.size() > 200)
    return fail("ingest stream_consumer '" + c.consumer + "' must be 1 to 200 characters");
  if (c.start != "0" && c.start != "$") {
    return fail("ingest stream_start '" + c.start +
                "' must be \"0\" (a new group reads the whole stream) or \"$\" (only new entries)");
  }
  if (c.batch == 0 || c.batch > StreamSource::kMaxInFlight) {
    return fail("ingest stream_batch " + std::to_string(c.batch) + " is out of range: 1 to " +
                std::to_string(StreamSource::kMaxInFlight));
  }
  if (c.rejected_maxlen == 0) return fail("ingest stream_rejected_maxlen must be positive");
  return true;
}

StreamSource::StreamSource(const StreamConfig& config, const RedisConfig& redis,
                           const std::vector<NamespaceSpec>& namespaces, const std::string& segment,
                           std::uint64_t generation, LogSink log)
    : config_(config),
      redis_(redis),
      decoder_(namespaces),
      cursor_(segment, generation),
      log_(std::move(log)),
      to_apply_(kMaxInFlight),
      handled_(kMaxInFlight) {
  if (auto ok = validate(config_); !ok) throw Error(ok.error());
  if (config_.group.empty()) config_.group = default_stream_group(segment);
  for (const auto& s : config_.streams) slots_.push_back(cursor_.slot(s));
  last_read_.assign(config_.streams.size(), 0);
  pending_from_.assign(config_.streams.size(), "0");
  redelivered_.assign(config_.streams.size(), 0);
  in_recovery_.assign(config_.streams.size(), true);
  // A first connection here, so that a stream key of another type stops the daemon at start
  // with a clear error; an unreachable Redis does not (the thread keeps trying).
  RedisClient c;
  if (auto r = RedisClient::connect(redis_)) {
    c = std::move(*r);
    if (!setup(c, true)) c.close();
  } else {
    ++redis_errors_;
    log(LogLevel::warn, "stream source: " + r.error() + "; retrying in the background");
  }
  thread_ = std::thread([this, c = std::move(c)]() mutable { run(c); });
}

StreamSource::~StreamSource() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  // After the join this thread is the only one left touching the queues.
  Entry* e = nullptr;
  while (to_apply_.pop(e)) delete e;
  while (handled_.pop(e)) delete e;
  for (Entry* x : to_ack_) delete x;
  for (auto& [x, ticket] : unsynced_) delete x;
}

std::string StreamSource::name() const {
  std::string s = "stream";
  for (const auto& n : config_.streams) s += " " + n;
  return s + " (group " + config_.group + ")";
}

void StreamSource::log(LogLevel level, const std::string& message) const {
  if (log_) log_(level, message);
}

void StreamSource::sleep_for(std::chrono::milliseconds d) const {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop_.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// ---- apply loop -------------------------------------------------------------------------------

void StreamSource::release_synced(const Writer& writer) {
  while (!unsynced_.empty() && writer.redis_acknowledged(unsynced_.front().second)) {
    handled_.push(unsynced_.front().first);  // never full: see below
    unsynced_.pop_front();
  }
}

std::size_t StreamSource::poll(CommandExecutor& exec, std::int64_t, std::size_t budget) {
  const bool mirrors = exec.writer().mirrors_to_redis();
  if (mirrors) release_synced(exec.writer());
  std::size_t n = 0;
  Entry* e = nullptr;
  while (n < budget && to_apply_.pop(e)) {
    ++n;
    ++counters_.received;
    const std::uint32_t slot = slots_[e->stream];
    if (e->deleted) {
      e->status = CommandStatus::not_found;  // nothing to apply: acknowledged
      ++counters_.ignored;
      ++counters_.not_found;
    } else if (e->id != 0 && e->id <= cursor_.last(slot)) {
      // A previous writer handled it and was stopped before its XACK: acknowledge it now,
      // without applying it twice (with the copy to <stream>:rejected if it was refused).
      ++replayed_;
      if (auto why = cursor_.refusal(slot, e->id)) {
        e->status = CommandStatus::rejected;
        e->error = std::move(*why);
        ++counters_.rejected;
      } else {
        e->status = CommandStatus::duplicate;
        ++counters_.ignored;
        ++counters_.duplicates;
      }
    } else {
      CommandResult r;
      if (auto* bad = std::get_if<std::string>(&e->decoded)) {
        r.error = *bad;  // status rejected
      } else {
        r = exec.execute(std::get<Command>(e->decoded));
      }
      count(counters_, r);
      e->status = r.status;
      if (r.status == CommandStatus::rejected) {
        e->error = std::move(r.error);
        if (e->id != 0) cursor_.refused(slot, e->id, e->error);  // SC2
      }
      if (e->id != 0) cursor_.advance(slot, e->id);  // SC3
    }
    // Never full: at most kMaxInFlight entries exist between the threads.
    if (mirrors) {
      unsynced_.emplace_back(e, exec.writer().redis_ticket());
    } else {
      handled_.push(e);
    }
  }
  if (mirrors && n > 0) release_synced(exec.writer());
  return n;
}

// ---- stream thread ----------------------------------------------------------------------------

bool StreamSource::setup(RedisClient& c, bool at_start) {
  Args a;
  for (const auto& s : config_.streams) {
    a.clear();
    a.add("XGROUP").add("CREATE").add(s).add(config_.group).add(config_.start).add("MKSTREAM");
    auto r = c.command(a);
    if (!r) {
      ++redis_errors_;
      log(LogLevel::warn, "stream source: " + r.error());
      return false;
    }
    if ((*r)->type == REDIS_REPLY_ERROR && !is_error(*r, "BUSYGROUP")) {
      ++redis_errors_;
      const std::string why = "stream source: cannot create consumer group '" + config_.group +
                              "' on '" + s + "': " + reply_text(r->get());
      if (at_start && is_error(*r, "WRONGTYPE"))
        throw Error(why + " (the key holds something other than a stream)");
      log(LogLevel::error, why);
      return false;
    }
    if ((*r)->type != REDIS_REPLY_ERROR) {
      log(LogLevel::info, "stream source: created consumer group '" + config_.group + "' on '" + s +
                              "' at " + (config_.start == "0" ? "its start" : "its end"));
    }
    // Entries another consumer of the group read and never acknowledged become ours (a writer
    // that ran under another consumer name); ours are read again from the start below.
    std::string from = "0-0";
    for (int round = 0; round < 10'000; ++round) {
      a.clear();
      a.add("XAUTOCLAIM").add(s).add(config_.group).add(config_.consumer).add("0").add(from);
      a.add("COUNT").add(std::uint64_t{1000}).add("JUSTID");
      auto cr = c.command(a);
      if (!cr) {
        ++redis_errors_;
        log(LogLevel::warn, "stream source: " + cr.error());
        return false;
      }
      if ((*cr)->type != REDIS_REPLY_ARRAY || (*cr)->elements < 2) {
        ++redis_errors_;
        log(LogLevel::error, "stream source: XAUTOCLAIM on '" + s + "': " + reply_text(cr->get()));
        return false;
      }
      const auto* claimed = (*cr)->element[1];
      if (claimed->type == REDIS_REPLY_ARRAY && claimed->elements > 0) {
        log(LogLevel::info, "stream source: took over " + std::to_string(claimed->elements) +
                                " pending entries of '" + s + "' from other consumers");
      }
      from = std::string(str((*cr)->element[0]));
      if (from.empty() || from == "0-0") break;
    }
  }
  // Our own pending entries, from the start: those handed over but not acknowledged when the
  // connection (or the previous writer) went away. Ids at or below last_read_ are skipped.
  std::fill(pending_from_.begin(), pending_from_.end(), "0");
  std::fill(in_recovery_.begin(), in_recovery_.end(), true);
  return true;
}

void StreamSource::run(RedisClient& c) {
  auto backoff = redis_.reconnect_min;
  bool down = false;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (!c.connected()) {
      auto r = RedisClient::connect(redis_);
      if (r) {
        c = std::move(*r);
        if (!setup(c, false)) c.close();
      } else {
        ++redis_errors_;
        if (!down) log(LogLevel::warn, "stream source: " + r.error() + "; retrying");
      }
      if (!c.connected()) {
        down = true;
        sleep_for(backoff);
        backoff = std::min(backoff * 2, redis_.reconnect_max);
        continue;
      }
      if (down) log(LogLevel::info, "stream source: connected to redis " + redis_endpoint(redis_));
      down = false;
      backoff = redis_.reconnect_min;
    }
    if (!cycle(c)) down = true;
  }
  // Stopping: acknowledge what the apply loop handled (its last poll is done).
  Entry* e = nullptr;
  while (handled_.pop(e)) to_ack_.push_back(e);
  std::size_t replies = 0;
  if (c.connected() && !to_ack_.empty() && queue_acks(c, replies)) {
    bool ok = true;
    for (std::size_t i = 0; ok && i < replies; ++i) ok = static_cast<bool>(c.read_reply());
    if (ok) acked_.fetch_add(to_ack_.size(), std::memory_order_relaxed);
  }
}

// One round trip, pipelined: the acknowledgements of what the apply loop handled and the next
// XREADGROUP go out together, and while Redis works on them this thread decodes and hands over
// the entries of the previous read. So Redis's time and the decoding overlap instead of adding.
bool StreamSource::cycle(RedisClient& c) {
  Entry* e = nullptr;
  while (handled_.pop(e)) to_ack_.push_back(e);
  const std::size_t acking = to_ack_.size();
  std::size_t ack_replies = 0;
  if (acking > 0 && !queue_acks(c, ack_replies)) return lost(c, "acknowledging");
  const std::size_t room = kMaxInFlight - in_flight_ - unread_count_;
  const bool reading = room >= std::min(config_.batch, kMaxInFlight / 4);
  if (reading) {
    bool pending = false;
    for (const auto& p : pending_from_) pending = pending || !p.empty();
    Args a;
    a.add("XREADGROUP").add("GROUP").add(config_.group).add(config_.consumer);
    a.add("COUNT").add(static_cast<std::uint64_t>(std::min(room, config_.batch)));
    // Block only when nothing else is waiting, and well inside command_timeout.
    if (!pending && in_flight_ == 0 && unread_count_ == 0 && acking == 0) {
      const auto block = std::min<std::int64_t>(50, redis_.command_timeout.count() / 4);
      a.add("BLOCK").add(static_cast<std::uint64_t>(std::max<std::int64_t>(block, 1)));
    }
    a.add("STREAMS");
    for (const auto& s : config_.streams) a.add(s);
    for (const auto& p : pending_from_) a.add(p.empty() ? std::string_view(">") : p);
    if (!c.append(a)) return lost(c, "reading");
  }
  if (ack_replies > 0 || reading) {
    if (!c.send()) return lost(c, "sending");
  }
  // Overlap: decode and hand over the previous read while Redis works on this round trip.
  if (unread_) {
    hand_over(unread_.get());
    unread_.reset();
    unread_count_ = 0;
  }
  if (ack_replies == 0 && !reading) {  // the apply loop is behind: wait for it
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    return true;
  }
  for (std::size_t i = 0; i < ack_replies; ++i) {
    auto r = c.read_reply();
    if (!r) return lost(c, "acknowledging");
    if ((*r)->type == REDIS_REPLY_ERROR) {
      ++redis_errors_;
      log(LogLevel::error, "stream source: acknowledging: " + reply_text(r->get()));
    }
  }
  if (acking > 0) {
    acked_.fetch_add(acking, std::memory_order_relaxed);
    in_flight_ -= acking;
    for (Entry* x : to_ack_) delete x;
    to_ack_.clear();
  }
  if (!reading) return true;
  auto r = c.read_reply();
  if (!r) return lost(c, "reading");
  if ((*r)->type == REDIS_REPLY_ERROR) {
    // NOGROUP: the stream or the group was deleted under us. Set up again after a pause.
    ++redis_errors_;
    log(LogLevel::error,
        "stream source: XREADGROUP: " + reply_text(r->get()) + "; setting up again");
    c.close();
    sleep_for(redis_.reconnect_min);
    return false;
  }
  const std::size_t got = absorb(r->get());
  if (got > 0) {
    unread_ = std::move(*r);
    unread_count_ = got;
  } else {
    finish_recovery();
    if (in_flight_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

bool StreamSource::lost(RedisClient& c, const char* doing) {
  // Entries in to_ack_ stay there: acknowledged after the reconnect. An unread reply is kept
  // and handed over then (its entries are ours in Redis either way).
  ++redis_errors_;
  log(LogLevel::warn, std::string("stream source: connection lost while ") + doing + " (" +
                          std::to_string(to_ack_.size()) +
                          " entries to acknowledge); reconnecting");
  c.close();
  return false;
}

// Calls fn(stream index, entries array) for each of our streams in an XREADGROUP reply:
// [[stream name, [[id, [field, value, ...]], ...]], ...]. Anything else is skipped.
template <class Fn>
void StreamSource::for_each_stream(const redisReply* rep, Fn&& fn) const {
  if (rep->type != REDIS_REPLY_ARRAY) return;
  for (std::size_t k = 0; k < rep->elements; ++k) {
    const redisReply* sr = rep->element[k];
    if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) continue;
    const auto it = std::find(config_.streams.begin(), config_.streams.end(), str(sr->element[0]));
    const redisReply* entries = sr->element[1];
    if (it == config_.streams.end() || entries->type != REDIS_REPLY_ARRAY) continue;
    fn(static_cast<std::uint32_t>(it - config_.streams.begin()), entries);
  }
}

// A fresh read: moves each stream's own-pending read position past what came back (a stream
// whose pending read came back empty is done: new entries from then on). Returns the entries.
std::size_t StreamSource::absorb(const redisReply* rep) {
  std::vector<bool> seen(config_.streams.size(), false);
  std::size_t got = 0;
  for_each_stream(rep, [&](std::uint32_t i, const redisReply* entries) {
    got += entries->elements;
    if (entries->elements == 0 || pending_from_[i].empty()) return;
    seen[i] = true;
    const redisReply* last = entries->element[entries->elements - 1];
    if (last->type == REDIS_REPLY_ARRAY && last->elements == 2)
      pending_from_[i] = std::string(str(last->element[0]));
  });
  for (std::size_t i = 0; i < pending_from_.size(); ++i) {
    if (pending_from_[i].empty() || seen[i]) continue;
    pending_from_[i].clear();
    pending_done_.push_back(i);  // reported once its entries are handed over
  }
  return got;
}

// Decodes the entries of a read and hands them to the apply loop (room was checked when the
// read was issued).
void StreamSource::hand_over(const redisReply* rep) {
  for_each_stream(rep, [&](std::uint32_t i, const redisReply* entries) {
    for (std::size_t j = 0; j < entries->elements; ++j) {
      const redisReply* er = entries->element[j];
      if (er->type != REDIS_REPLY_ARRAY || er->elements != 2) continue;
      const std::string_view id = str(er->element[0]);
      auto packed = pack_stream_id(id);
      if (packed && *packed <= last_read_[i]) continue;  // handed over already
      if (in_recovery_[i]) ++redelivered_[i];
      auto* e = new Entry;
      e->stream = i;
      e->id_text = std::string(id);
      const redisReply* fr = er->element[1];
      if (fr->type == REDIS_REPLY_ARRAY) {
        e->fields.reserve(fr->elements / 2);
        for (std::size_t f = 0; f + 1 < fr->elements; f += 2)
          e->fields.emplace_back(str(fr->element[f]), str(fr->element[f + 1]));
      }
      if (!packed) {
        e->decoded = packed.error();
      } else {
        e->id = *packed;
        last_read_[i] = *packed;
        if (fr->type != REDIS_REPLY_ARRAY)
          e->deleted = true;  // a pending entry that was XDELeted
        else
          e->decoded = decode_stream_entry(decoder_, e->id, e->fields);
      }
      to_apply_.push(e);
      ++in_flight_;
    }
  });
  finish_recovery();
}

// Streams whose own-pending read ended: say how many entries a previous writer (or connection)
// left unacknowledged, once.
void StreamSource::finish_recovery() {
  for (std::size_t i : pending_done_) {
    if (redelivered_[i] > 0) {
      log(LogLevel::info, "stream source: '" + config_.streams[i] +
                              "': " + std::to_string(redelivered_[i]) +
                              " entries read before and never acknowledged were read again");
    }
    redelivered_[i] = 0;
    in_recovery_[i] = false;
  }
  pending_done_.clear();
}

// Appends the acknowledgements of to_ack_ to the pipeline: per stream, one XACK for every entry
// that was not refused; each refused entry's copy and XACK in one MULTI/EXEC (never acknowledged
// without its copy). Counts the replies to read.
bool StreamSource::queue_acks(RedisClient& c, std::size_t& replies) {
  auto queue = [&](const Args& x) {
    if (!c.append(x)) return false;
    ++replies;
    return true;
  };
  Args a;
  for (std::uint32_t s = 0; s < config_.streams.size(); ++s) {
    a.clear();
    a.add("XACK").add(config_.streams[s]).add(config_.group);
    const std::size_t base = a.size();
    for (Entry* x : to_ack_) {
      if (x->stream != s) continue;
      if (x->status != CommandStatus::rejected) {
        a.add(x->id_text);
        continue;
      }
      Args m, add, ack, exec;
      m.add("MULTI");
      add.add("XADD").add(config_.streams[s] + ":rejected").add("MAXLEN").add("~");
      add.add(static_cast<std::uint64_t>(config_.rejected_maxlen)).add("*");
      add.add("id").add(x->id_text).add("error").add(x->error).add("cmd");
      add.add(rejected_payload(x->fields)).add("group").add(config_.group);
      ack.add("XACK").add(config_.streams[s]).add(config_.group).add(x->id_text);
      exec.add("EXEC");
      if (!queue(m) || !queue(add) || !queue(ack) || !queue(exec)) return false;
    }
    if (a.size() > base && !queue(a)) return false;
  }
  return true;
}

}  // namespace poscache::ingest
