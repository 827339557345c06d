#include "writer/redis_sync.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/key_text.hpp"
#include "shm/seqlock.hpp"

namespace poscache::detail {

using namespace poscache::shm;

namespace {

std::string_view ns_name(const SegmentHeader& h, std::uint16_t ns) {
  return fixed_name(h.namespaces[ns].name);
}
}  // namespace

void to_entry(const SyncEvent& e, JournalEntry& out) noexcept {
  out.version = e.version;
  out.kind = static_cast<std::uint8_t>(e.kind);
  out.has_ns = e.ns ? 1 : 0;
  out.ns = e.ns.value_or(0);
  const std::size_t n = std::min(e.text.size(), kJournalTextMax);
  out.text_len = static_cast<std::uint16_t>(n);
  std::memcpy(out.text, e.text.data(), n);
  out.payload = e.payload;
}

SyncEvent from_entry(const JournalEntry& in, std::uint64_t pos) {
  SyncEvent e;
  e.kind = static_cast<SyncEvent::Kind>(in.kind);
  e.version = in.version;
  if (in.has_ns != 0) e.ns = in.ns;
  e.text.assign(in.text, std::min<std::size_t>(in.text_len, kJournalTextMax));
  e.payload = in.payload;
  e.journal_pos = pos + 1;
  return e;
}

RedisSync::RedisSync(const RedisConfig& config, std::vector<NamespaceSpec> namespaces,
                     SegmentView view, LogSink log)
    : cfg_(config),
      fmt_(config.prefix, std::move(namespaces)),
      v_(view),
      log_(std::move(log)),
      half_interval_ns_(std::chrono::nanoseconds(config.flush_interval).count() / 2),
      batch_size_(config.batch_size),
      // Epochs must not repeat the marks a previous writer left in the SlotBooks.
      epoch_(static_cast<std::uint64_t>(realtime_ns())) {
  in_dirty_.assign(v_.capacity, 0);
  journal_done_.assign(v_.journal_entries, 0);
  if (v_.journal != nullptr)
    overflows_seen_ = v_.journal->overflows.load(std::memory_order_relaxed);
  all_batches_.push_back(std::make_unique<SyncBatch>());
  cur_ = all_batches_.back().get();
  set_state(RedisState::connecting);
}

RedisSync::~RedisSync() {
  stop();
}

void RedisSync::start() {
  thread_ = std::thread([this] { run(); });
}

void RedisSync::stop() {
  if (!thread_.joinable()) return;
  // The sync thread drains the queue whether Redis is up or not, so a full queue frees quickly.
  while (!cur_->empty()) {
    hand_off();
    if (!cur_->empty()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  stop_.store(true, std::memory_order_release);
  thread_.join();
}

SyncEvent& RedisSync::add_event(SyncEvent::Kind kind, std::uint64_t version, std::int64_t t) {
  if (cur_->empty()) cur_->first_ns = t;
  SyncEvent& e = cur_->events.emplace_back();
  e.kind = kind;
  e.version = version;
  return e;
}

void RedisSync::commit(SyncEvent& e) noexcept {
  JournalHeader* j = v_.journal;
  if (j == nullptr || v_.journal_entries == 0) return;
  const std::uint64_t head = j->head.load(std::memory_order_relaxed);  // only this thread stores it
  // acquire: pairs with the sync thread's release store of tail; entries below it are no longer
  // needed, so the one at head % entries may be overwritten.
  const std::uint64_t tail = j->tail.load(std::memory_order_acquire);
  if (head - tail >= v_.journal_entries || e.text.size() > kJournalTextMax) {
    j->overflows.store(j->overflows.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  to_entry(e, v_.entries[head % v_.journal_entries]);
  e.journal_pos = head + 1;
  // release: the entry is complete before head covers it. For a writer killed here, the next
  // writer maps the segment after this process's stores retired, in program order (the same
  // argument as the undo record's, shm/seqlock.hpp).
  j->head.store(head + 1, std::memory_order_release);
}

void RedisSync::replay(SyncEvent&& e) {
  if (cur_->empty()) cur_->first_ns = realtime_ns();
  cur_->events.push_back(std::move(e));
}

// Sync thread: the event of journal entry pos - 1 is in Redis, or superseded by a later event
// of its key that is pending (and journaled after it). The tail moves past every entry so marked.
void RedisSync::journal_done(std::uint64_t pos) {
  if (pos == 0 || v_.journal == nullptr) return;
  const std::uint64_t n = v_.journal_entries;
  journal_done_[(pos - 1) % n] = 1;
  std::uint64_t tail =
      v_.journal->tail.load(std::memory_order_relaxed);  // only this thread stores it
  const std::uint64_t head = v_.journal->head.load(std::memory_order_acquire);
  const std::uint64_t from = tail;
  while (tail < head && journal_done_[tail % n] != 0) {
    journal_done_[tail % n] = 0;
    ++tail;
  }
  // release: pairs with the apply thread's acquire load in commit() (it may now reuse them).
  if (tail != from) v_.journal->tail.store(tail, std::memory_order_release);
}

std::uint64_t RedisSync::hand_off() {
  if (cur_->empty()) return handed_;
  cur_->seq = handed_ + 1;
  if (!to_sync_.push(cur_)) return handed_;  // full: keep filling this batch, drop nothing
  ++handed_;
  ++epoch_;
  SyncBatch* next = nullptr;
  if (!to_apply_.pop(next)) {
    all_batches_.push_back(std::make_unique<SyncBatch>());
    next = all_batches_.back().get();
  }
  cur_ = next;
  return handed_;
}

bool RedisSync::flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::uint64_t target = hand_off();
  while (!cur_->empty() && std::chrono::steady_clock::now() < deadline) {  // the queue was full
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    target = hand_off();
  }
  while (clean_seq_.load(std::memory_order_acquire) < target) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// ---- pending state (sync thread) ------------------------------------------------------------
void RedisSync::drain() {
  SyncBatch* b = nullptr;
  while (to_sync_.pop(b)) {
    merge(*b);
    merged_seq_.store(b->seq, std::memory_order_relaxed);
    b->slots.clear();
    b->events.clear();
    b->first_ns = 0;
    to_apply_.push(b);  // cannot fail: it holds at most the batches that exist
  }
}

void RedisSync::merge(SyncBatch& b) {
  if (b.empty()) return;
  if (oldest_ns_ == 0 || b.first_ns < oldest_ns_) oldest_ns_ = b.first_ns;
  for (SyncEvent& e : b.events) merge_event(std::move(e));
  for (std::uint32_t s : b.slots) {
    if (s < v_.capacity && in_dirty_[s] == 0) {
      in_dirty_[s] = 1;
      dirty_.push_back(s);
    }
  }
}

std::string RedisSync::event_key(const SyncEvent& e) const {
  const SlotPayload& p = e.payload;
  return fmt_.position_key(ns_name(*v_.h, p.ns), {p.account, p.account_len},
                           {p.instrument, p.instrument_len});
}

bool covers(const SyncEvent& e, std::string_view ns_name, const SlotPayload& p) {
  const std::string_view account(p.account, p.account_len),
      instrument(p.instrument, p.instrument_len);
  switch (e.kind) {
    case SyncEvent::Kind::all:
      return true;
    case SyncEvent::Kind::ns:
      return e.ns && p.ns == *e.ns;
    case SyncEvent::Kind::account:
      return account == e.text && (!e.ns || p.ns == *e.ns);
    case SyncEvent::Kind::erase:
      return p.ns == e.payload.ns &&
             account == std::string_view(e.payload.account, e.payload.account_len) &&
             instrument == std::string_view(e.payload.instrument, e.payload.instrument_len);
    case SyncEvent::Kind::glob: {
      std::string k;
      return detail::key_matches(e.text.c_str(), k, ns_name, account, instrument);
    }
    case SyncEvent::Kind::spill:
      return false;
  }
  return false;
}

void RedisSync::merge_event(SyncEvent&& e) {
  if (e.kind == SyncEvent::Kind::spill || e.kind == SyncEvent::Kind::erase) {
    std::string key = event_key(e);
    auto it = key_events_.find(key);
    if (it == key_events_.end()) {
      key_events_.emplace(std::move(key), std::move(e));
    } else if (it->second.version < e.version) {
      journal_done(
          it->second.journal_pos);  // superseded by e, which is pending and journaled after it
      it->second = std::move(e);
    } else {
      journal_done(e.journal_pos);
    }
    return;
  }
  // A pattern removal supersedes every older per-key event it covers: dropping them keeps an
  // older spill from re-creating a key after the pattern removed it.
  for (auto it = key_events_.begin(); it != key_events_.end();) {
    const SlotPayload& p = it->second.payload;
    if (it->second.version < e.version && covers(e, ns_name(*v_.h, p.ns), p)) {
      journal_done(it->second.journal_pos);
      it = key_events_.erase(it);
    } else {
      ++it;
    }
  }
  pattern_events_.push_back(std::move(e));
}

bool RedisSync::has_pending() const noexcept {
  return !dirty_.empty() || !key_events_.empty() || !pattern_events_.empty();
}

// ---- connection -------------------------------------------------------------------------------
void RedisSync::connect() {
  auto c = RedisClient::connect(cfg_);
  std::string err;
  if (c) {
    client_ = std::move(*c);
    err = load_scripts();
    if (err.empty()) {
      fmt_.schema_args(args_);
      auto r = client_.command(args_);
      if (r && (*r)->type != REDIS_REPLY_ERROR) {
        backoff_ns_ = 0;
        set_state(RedisState::up);
        log(LogLevel::info, "redis " + describe(cfg_) + ": connected" + (was_up_ ? " again" : "") +
                                ", syncing under prefix '" + cfg_.prefix + "'");
        was_up_ = true;
        return;
      }
      err = r ? "redis " + describe(cfg_) + ": HSET " + fmt_.schema_key() +
                    " refused: " + reply_text(r->get())
              : r.error();
    }
    client_.close();
  } else {
    err = c.error();
  }
  const std::int64_t min_ns = std::chrono::nanoseconds(cfg_.reconnect_min).count();
  const std::int64_t max_ns = std::chrono::nanoseconds(cfg_.reconnect_max).count();
  backoff_ns_ = backoff_ns_ == 0 ? min_ns : std::min(max_ns, backoff_ns_ * 2);
  next_connect_ns_ = monotonic_ns() + backoff_ns_;
  // Log the first failure and every change of reason, not every retry.
  if (err != last_error_) {
    log(LogLevel::error, err + " (retrying with backoff up to " +
                             std::to_string(cfg_.reconnect_max.count()) +
                             " ms; updates go on, changes are kept until Redis is back)");
  }
  set_error(err);
  set_state(RedisState::down);
}

// SCRIPT LOAD of both scripts (after every connect, and after a NOSCRIPT reply). Returns the
// error, empty on success.
std::string RedisSync::load_scripts() {
  auto up = client_.load_script(kUpsertScript);
  if (!up) return up.error();
  auto del = client_.load_script(kDeleteScript);
  if (!del) return del.error();
  upsert_sha_ = *up;
  delete_sha_ = *del;
  reload_scripts_ = false;
  return {};
}

void RedisSync::lost_connection(const std::string& why) {
  client_.close();
  log(LogLevel::error, why + " (reconnecting; nothing unacknowledged is dropped)");
  set_error(why);
  set_state(RedisState::down);
  backoff_ns_ = std::chrono::nanoseconds(cfg_.reconnect_min).count();
  next_connect_ns_ = monotonic_ns() + backoff_ns_;
}

// ---- writing --------------------------------------------------------------------------------
// Reads `n` replies of the pipeline. A connection failure returns false (the caller keeps
// everything of this round); an error reply marks that command failed (ok[i] = false) and is
// logged; NOSCRIPT (scripts flushed on the server) reloads the scripts.
bool RedisSync::check_replies(std::size_t n, std::vector<bool>* ok) {
  for (std::size_t i = 0; i < n; ++i) {
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    const bool good = (*r)->type != REDIS_REPLY_ERROR;
    if (ok != nullptr) (*ok)[i] = good;
    if (!good) {
      const std::string text = reply_text(r->get());
      if (text.rfind("NOSCRIPT", 0) == 0) {
        reload_scripts_ = true;  // after every reply in flight is read: see flush_round()
      } else if (text != last_error_) {
        log(LogLevel::error,
            "redis " + describe(cfg_) + ": a write was refused: " + text + " (kept, retried)");
        set_error(text);
      }
    }
  }
  return true;
}

// Guarded deletes of (key, version of its removal), batch_size per round trip.
bool RedisSync::delete_pipelined(const std::vector<std::pair<ParsedKey, std::uint64_t>>& keys) {
  for (std::size_t base = 0; base < keys.size(); base += batch_size_) {
    const std::size_t n = std::min(batch_size_, keys.size() - base);
    std::vector<bool> ok(n, true);
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (std::size_t i = 0; i < n; ++i) {
        const auto& [k, version] = keys[base + i];
        fmt_.delete_args(delete_sha_, k.ns, k.account, k.instrument, version, args_);
        if (auto a = client_.append(args_); !a) {
          lost_connection(a.error());
          return false;
        }
      }
      if (!check_replies(n, &ok)) return false;
      if (std::all_of(ok.begin(), ok.end(), [](bool b) { return b; })) break;
      if (attempt == 1) return false;  // refused twice: keep the events, try next round
    }
  }
  return true;
}

// A run of account removals (their keys from the account sets), in version order: every set
// read in one pipeline, then every guarded delete in pipelines, so a burst of N costs a few
// round trips instead of 2 N.
// (A later removal's ZRANGE may list a member an earlier one deletes: its delete then finds no
// key. Nothing between them in the run can add a member: position writes come after events.)
bool RedisSync::run_accounts(const std::vector<SyncEvent>& events, std::size_t from,
                             std::size_t to) {
  for (std::size_t j = from; j < to; ++j) {
    args_.clear();
    args_.add("ZRANGE").add(fmt_.account_key(events[j].text)).add("0").add("-1");
    if (auto a = client_.append(args_); !a) {
      lost_connection(a.error());
      return false;
    }
  }
  if (auto w = client_.send(); !w) {
    lost_connection(w.error());
    return false;
  }
  std::vector<std::pair<ParsedKey, std::uint64_t>> keys;
  bool refused = false;
  for (std::size_t j = from; j < to; ++j) {  // every reply is read, even after a refusal
    const SyncEvent& e = events[j];
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    if ((*r)->type != REDIS_REPLY_ARRAY) {
      set_error("ZRANGE " + fmt_.account_key(e.text) + ": " + reply_text(r->get()));
      refused = true;
      continue;
    }
    for (std::size_t i = 0; i < (*r)->elements; ++i) {
      const std::string_view m((*r)->element[i]->str, (*r)->element[i]->len);
      const std::size_t c = m.find(':');
      if (c == std::string_view::npos) continue;
      ParsedKey k{std::string(m.substr(0, c)), e.text, std::string(m.substr(c + 1))};
      if (e.ns && k.ns != ns_name(*v_.h, *e.ns)) continue;
      keys.emplace_back(std::move(k), e.version);
    }
  }
  return !refused && delete_pipelined(keys);
}

// Pattern removals take their keys from Redis itself (SCAN, or the account's set), so positions
// that live only in Redis (evicted from the segment) are removed too. Each delete is guarded by
// the removal's version: a position written after the removal survives it.
// A namespace, glob or everything removal: the keys come from SCAN.
bool RedisSync::run_scan(const SyncEvent& e) {
  std::vector<std::pair<ParsedKey, std::uint64_t>> keys;
  const std::string pattern =
      fmt_.scan_pattern(e.kind == SyncEvent::Kind::ns ? e.ns : std::nullopt);
  std::string cursor = "0";
  do {
    args_.clear();
    args_.add("SCAN")
        .add(cursor)
        .add("MATCH")
        .add(pattern)
        .add("COUNT")
        .add("1000")
        .add("TYPE")
        .add("hash");
    auto r = client_.command(args_);
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    const redisReply* rep = r->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
      set_error("SCAN " + pattern + ": " + reply_text(rep));
      return false;
    }
    cursor.assign(rep->element[0]->str, rep->element[0]->len);
    keys.clear();
    std::string full;  // a key's text, for the glob
    for (std::size_t i = 0; i < rep->element[1]->elements; ++i) {
      const redisReply* k = rep->element[1]->element[i];
      auto pk = fmt_.parse_key({k->str, k->len});
      if (!pk) continue;
      if (e.kind == SyncEvent::Kind::glob) {
        if (!detail::key_matches(e.text.c_str(), full, pk->ns, pk->account, pk->instrument))
          continue;
      }
      keys.emplace_back(std::move(*pk), e.version);
    }
    if (!delete_pipelined(keys)) return false;
  } while (cursor != "0");
  return true;
}

// Events in version order. `done` counts the ones written (the caller keeps the rest).
bool RedisSync::write_events(std::vector<SyncEvent>& events, std::size_t& done) {
  done = 0;
  std::size_t i = 0;
  while (i < events.size()) {
    if (events[i].kind == SyncEvent::Kind::account) {  // a run of them, pipelined together
      std::size_t k = i;
      while (k < events.size() && k - i < batch_size_ && events[k].kind == SyncEvent::Kind::account)
        ++k;
      if (!run_accounts(events, i, k)) return false;
      for (; i < k; ++i) journal_done(events[i].journal_pos);
      done = i;
      continue;
    }
    if (events[i].kind != SyncEvent::Kind::spill && events[i].kind != SyncEvent::Kind::erase) {
      if (!run_scan(events[i])) return false;
      journal_done(events[i].journal_pos);
      done = ++i;
      continue;
    }
    // A run of per-key events, one pipeline per batch_size.
    std::size_t n = 0;
    while (i + n < events.size() && n < batch_size_ &&
           (events[i + n].kind == SyncEvent::Kind::spill ||
            events[i + n].kind == SyncEvent::Kind::erase)) {
      const SyncEvent& e = events[i + n];
      const SlotPayload& p = e.payload;
      Expected<bool> a = true;
      if (e.kind == SyncEvent::Kind::spill) {
        call_.clear();
        call_.add(fmt_, p);
        a = call_.append_to(client_, upsert_sha_);
      } else {
        fmt_.delete_args(delete_sha_, ns_name(*v_.h, p.ns), {p.account, p.account_len},
                         {p.instrument, p.instrument_len}, e.version, args_);
        a = client_.append(args_);
      }
      if (!a) {
        lost_connection(a.error());
        return false;
      }
      ++n;
    }
    std::vector<bool> ok(n, true);
    if (!check_replies(n, &ok)) return false;
    if (!std::all_of(ok.begin(), ok.end(), [](bool b) { return b; }))
      return false;  // retried next round
    for (std::size_t j = 0; j < n; ++j) {
      if (events[i + j].kind == SyncEvent::Kind::spill)
        synced_max_ = std::max(synced_max_, events[i + j].version);
      journal_done(events[i + j].journal_pos);
    }
    i += n;
    done = i;
  }
  return true;
}

// Every dirty slot's current content, batch_size per round trip. A slot that changes after it
// was read is marked dirty again by the apply thread and comes back in a later batch.
bool RedisSync::write_slots() {
  std::vector<std::uint32_t> round;
  round.swap(dirty_);
  for (std::uint32_t s : round) in_dirty_[s] = 0;  // a mark arriving from now on queues it again
  std::uint64_t words[kPayloadWords];
  std::size_t next = 0;
  auto requeue_from = [&](std::size_t from) {
    for (std::size_t j = from; j < round.size(); ++j) {
      const std::uint32_t s = round[j];
      if (in_dirty_[s] == 0) {
        in_dirty_[s] = 1;
        dirty_.push_back(s);
      }
    }
  };
  auto requeue = [&](std::uint32_t s) {
    if (in_dirty_[s] == 0) {
      in_dirty_[s] = 1;
      dirty_.push_back(s);
    }
  };
  // Pipelines of up to batch_size positions, per_call of them per EVALSHA, two in flight: the
  // next one is built and sent while Redis executes the previous one.
  const std::size_t per_call = std::max<std::size_t>(1, cfg_.positions_per_call);
  struct Chunk {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> items;  // (slot, version written)
    std::vector<std::size_t> call_end;                           // items index after each call
  };
  Chunk chunks[2];
  int inflight = -1;  // the chunk whose replies are still to be read
  auto fail_all = [&](const std::string& why) {
    if (!why.empty()) lost_connection(why);
    for (const Chunk& c : chunks) {
      for (const auto& [slot, ver] : c.items) requeue(slot);
    }
    requeue_from(next);
    return false;
  };
  // Reads a chunk's replies and acknowledges its positions; false on a lost connection.
  std::vector<bool> ok;
  bool refused = false;
  auto settle = [&](Chunk& c) -> bool {
    ok.assign(c.call_end.size(), true);
    if (!check_replies(c.call_end.size(), &ok)) return false;
    std::size_t from = 0;
    for (std::size_t k = 0; k < c.call_end.size(); ++k) {
      for (std::size_t j = from; j < c.call_end[k]; ++j) {
        const auto [s, ver] = c.items[j];
        if (!ok[k]) {
          requeue(s);
          refused = true;
          continue;
        }
        // release: pairs with the apply thread's acquire load before it evicts this slot
        std::atomic_ref<std::uint64_t>(v_.book[s].synced_version)
            .store(ver, std::memory_order_release);
        synced_max_ = std::max(synced_max_, ver);
      }
      from = c.call_end[k];
    }
    c.items.clear();
    c.call_end.clear();
    return true;
  };
  for (int cur = 0;; cur ^= 1) {
    Chunk& c = chunks[cur];
    call_.clear();
    auto send_call = [&]() -> bool {
      if (call_.positions() == 0) return true;
      const bool sent = static_cast<bool>(call_.append_to(client_, upsert_sha_));
      call_.clear();
      c.call_end.push_back(c.items.size());
      return sent;
    };
    bool sent = true;
    while (sent && next < round.size() && c.items.size() < batch_size_) {
      const std::uint32_t s = round[next++];
      if (!read_bounded(v_.slots[s], words, kPayloadWords)) {
        requeue(s);  // mid-write for a long time (a stopped writer?): later
        continue;
      }
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      if (p.ns == kFreeNamespace || p.ns >= fmt_.namespaces().size())
        continue;  // removed meanwhile
      const std::uint64_t synced =
          std::atomic_ref<std::uint64_t>(v_.book[s].synced_version).load(std::memory_order_relaxed);
      if (p.version <= synced) continue;  // Redis has it
      call_.add(fmt_, p);
      c.items.emplace_back(s, p.version);
      if (call_.positions() == per_call) sent = send_call();
    }
    if (sent) sent = send_call();
    if (!sent) return fail_all("redis " + describe(cfg_) + ": cannot queue a command");
    if (!c.call_end.empty()) {
      if (auto w = client_.send(); !w) return fail_all(w.error());
    }
    if (inflight >= 0 && !settle(chunks[inflight])) return fail_all("");
    if (refused) {  // e.g. NOSCRIPT: read what is in flight, keep the rest for the next round
      if (!c.call_end.empty() && !settle(c)) return fail_all("");
      break;
    }
    if (c.call_end.empty()) break;  // nothing more was sent: the round is done
    inflight = cur;
  }
  if (refused) {
    requeue_from(next);
    return false;
  }
  return true;
}

bool RedisSync::flush_round() {
  if (reload_scripts_) {  // the server lost them (SCRIPT FLUSH, a restart we did not notice)
    if (const std::string err = load_scripts(); !err.empty()) {
      lost_connection(err);
      return false;
    }
  }
  std::vector<SyncEvent> events;
  events.reserve(key_events_.size() + pattern_events_.size());
  for (auto& [k, e] : key_events_) events.push_back(std::move(e));
  for (auto& e : pattern_events_) events.push_back(std::move(e));
  key_events_.clear();
  pattern_events_.clear();
  std::sort(events.begin(), events.end(),
            [](const SyncEvent& a, const SyncEvent& b) { return a.version < b.version; });
  std::size_t done = 0;
  bool ok = write_events(events, done);
  if (!ok) {
    for (std::size_t i = done; i < events.size(); ++i) merge_event(std::move(events[i]));
  } else {
    ok = write_slots();
  }
  // (run() resets the oldest-change age and the clean mark once nothing is pending.)
  if (ok && !last_error_.empty() && client_.connected()) set_error("");
  return ok;
}

// ---- state in the header ----------------------------------------------------------------------
void RedisSync::set_state(RedisState state) {
  state_ = state;
  v_.h->redis_state.store(static_cast<std::uint32_t>(state), std::memory_order_relaxed);
}

// The error text is under its own seqlock (redis_error_seq), like a slot: odd while it changes.
void RedisSync::set_error(const std::string& text) {
  last_error_ = text;
  SegmentHeader& h = *v_.h;
  const std::uint64_t s = h.redis_error_seq.load(std::memory_order_relaxed);
  h.redis_error_seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  char buf[sizeof h.redis_error] = {};
  const std::size_t n = std::min(text.size(), sizeof buf);
  std::memcpy(buf, text.data(), n);
  for (std::size_t i = 0; i < sizeof buf; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, buf + i, 8);
    store_relaxed(reinterpret_cast<std::uint64_t*>(h.redis_error + i), w);
  }
  h.redis_error_len.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  h.redis_error_seq.store(s + 2, std::memory_order_release);
}

// A full journal is worth one line per episode, not one per removal.
void RedisSync::report_overflows() {
  if (v_.journal == nullptr) return;
  const std::uint64_t ov = v_.journal->overflows.load(std::memory_order_relaxed);
  if (ov == overflows_seen_) return;
  const std::int64_t t = monotonic_ns();
  if (t - overflow_logged_ns_ < 10'000'000'000) return;
  log(LogLevel::warn, "journal full (" + std::to_string(v_.journal_entries) +
                          " entries): " + std::to_string(ov - overflows_seen_) +
                          " more removals are kept in memory only until Redis has them; a kill -9 "
                          "before then would lose them (" +
                          std::to_string(ov) + " in all)");
  overflows_seen_ = ov;
  overflow_logged_ns_ = t;
}

void RedisSync::publish() {
  SegmentHeader& h = *v_.h;
  h.redis_dirty.store(dirty_.size() + key_events_.size() + pattern_events_.size(),
                      std::memory_order_relaxed);
  h.redis_oldest_unsynced_ns.store(has_pending() ? oldest_ns_ : 0, std::memory_order_relaxed);
  h.redis_synced_version.store(synced_max_, std::memory_order_relaxed);
}

void RedisSync::run() {
  if (cfg_.sync_cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cfg_.sync_cpu), &set);
    if (const int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set); err != 0) {
      log(LogLevel::warn, "cannot pin the sync thread to cpu " + std::to_string(cfg_.sync_cpu) +
                              ": " + std::strerror(err));
    }
  }
  pthread_setname_np(pthread_self(), "poscache-sync");
  std::int64_t stop_deadline = 0;
  bool reported_loss = false;
  for (;;) {
    const bool stopping = stop_.load(std::memory_order_acquire);
    drain();
    if (stopping && stop_deadline == 0)
      stop_deadline = monotonic_ns() + std::chrono::nanoseconds(cfg_.close_timeout).count();
    bool progress = false;
    if (!client_.connected() && monotonic_ns() >= next_connect_ns_) connect();
    if (client_.connected() && has_pending()) progress = flush_round();
    if (!has_pending()) {
      oldest_ns_ = 0;
      clean_seq_.store(merged_seq_.load(std::memory_order_relaxed), std::memory_order_release);
    }
    publish();
    report_overflows();
    if (stopping) {
      if (!has_pending() && to_sync_.read_available() == 0) break;
      if (monotonic_ns() >= stop_deadline) {
        if (!reported_loss) {
          log(LogLevel::error,
              "closing with " + std::to_string(dirty_.size()) + " positions and " +
                  std::to_string(key_events_.size() + pattern_events_.size()) +
                  " removals not written to Redis (" +
                  (last_error_.empty() ? "timeout" : last_error_) +
                  "); the segment keeps the positions and a writer re-attaching to it writes them");
          reported_loss = true;
        }
        break;
      }
    }
    if (!progress) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  client_.close();
  set_state(
      RedisState::off);  // off: no sync thread any more (the dirty count stays as it was left)
}

}  // namespace poscache::detail
