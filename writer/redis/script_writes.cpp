// The sync thread's writes by per-key scripts (RedisGuard::scripts): pipelines of EVALSHA, each
// script guarding its key's version on the server. A round's order:
// writer/redis/sync_round.cpp; the protocol: writer/redis/redis_sync.hpp.
#include "writer/redis/script_writes.hpp"

#include <algorithm>
#include <cstring>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"

namespace poscache::detail {

using namespace poscache::shm;

std::string ScriptWrites::load_scripts() {
  auto up = w_.client_.load_script(kUpsertScript);
  if (!up) return up.error();
  auto del = w_.client_.load_script(kDeleteScript);
  if (!del) return del.error();
  upsert_sha_ = *up;
  delete_sha_ = *del;
  return {};
}

SyncStrategy::Opened ScriptWrites::open(std::string& err) {
  w_.fmt_.schema_args(args_);
  auto r = w_.client_.command(args_);
  if (r && (*r)->type != REDIS_REPLY_ERROR) return Opened::up;
  err = r ? "redis " + redis_endpoint(w_.cfg_) + ": HSET " + w_.fmt_.schema_key() +
                " refused: " + reply_text(r->get())
          : r.error();
  return Opened::failed;
}

std::string ScriptWrites::guard_note() const {
  return " (per-key scripts, no lease)";
}

bool ScriptWrites::check_replies(std::size_t n, std::vector<bool>* ok) {
  for (std::size_t i = 0; i < n; ++i) {
    auto r = w_.client_.read_reply();
    if (!r) {
      w_.lost_connection(r.error());
      return false;
    }
    const bool good = (*r)->type != REDIS_REPLY_ERROR;
    if (ok != nullptr) (*ok)[i] = good;
    if (!good) {
      SyncWorker::Counted::add(w_.counted_.errors);
      const std::string text = reply_text(r->get());
      if (text.rfind("NOSCRIPT", 0) == 0) {
        w_.reload_scripts_ = true;  // after every reply in flight is read: see flush_round()
      } else if (text != w_.last_error_) {
        w_.log(LogLevel::error, "redis " + redis_endpoint(w_.cfg_) +
                                    ": a write was refused: " + text + " (kept, retried)");
        w_.set_error(text);
      }
    }
  }
  return true;
}

// ---- events ---------------------------------------------------------------------------------
// One pipeline: the upsert script for a spill, the delete script for an erase.
bool ScriptWrites::write_key_events(std::span<const RemovalEvent> events) {
  for (const RemovalEvent& e : events) {
    const SlotPayload& p = e.payload;
    Expected<bool> a = true;
    if (e.kind == RemovalEvent::Kind::spill) {
      call_.clear();
      call_.add(w_.fmt_, p);
      a = call_.append_to(w_.client_, upsert_sha_);
    } else {
      w_.fmt_.delete_args(delete_sha_, w_.ns_name(p.ns), {p.account, p.account_len},
                          {p.instrument, p.instrument_len}, e.version, args_);
      a = w_.client_.append(args_);
    }
    if (!a) {
      w_.lost_connection(a.error());
      return false;
    }
  }
  std::vector<bool> ok(events.size(), true);
  if (!check_replies(events.size(), &ok)) return false;
  return std::all_of(ok.begin(), ok.end(), [](bool b) { return b; });  // else retried next round
}

// The delete script, batch_size per pipeline; a batch Redis refused is sent once more.
bool ScriptWrites::delete_keys(const VersionedKeys& keys) {
  const std::size_t batch = w_.batch_size_;
  for (std::size_t base = 0; base < keys.size(); base += batch) {
    const std::size_t n = std::min(batch, keys.size() - base);
    std::vector<bool> ok(n, true);
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (std::size_t i = 0; i < n; ++i) {
        const auto& [k, version] = keys[base + i];
        w_.fmt_.delete_args(delete_sha_, k.ns, k.account, k.instrument, version, args_);
        if (auto a = w_.client_.append(args_); !a) {
          w_.lost_connection(a.error());
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

bool ScriptWrites::write_plain(const std::function<void(Commands&)>& build) {
  Commands c;
  build(c);
  const std::size_t n = c.size();
  auto a = c.append_to(w_.client_);
  if (a) a = w_.client_.send();
  if (!a) {
    w_.lost_connection(a.error());
    return false;
  }
  std::vector<bool> ok(n, true);
  if (!check_replies(n, &ok)) return false;
  return std::find(ok.begin(), ok.end(), false) == ok.end();
}

// ---- slots ----------------------------------------------------------------------------------
// Every dirty slot's current content, batch_size per round trip. A slot that changes after it
// was read is marked dirty again by the apply thread and comes back in a later batch.
bool ScriptWrites::write_slots() {
  std::vector<std::uint32_t> round;
  round.swap(w_.dirty_);
  for (std::uint32_t s : round)  // a mark arriving from now on queues it again
    w_.in_dirty_[s] &= static_cast<std::uint8_t>(~1u);
  std::uint64_t words[kPayloadWords];
  std::size_t next = 0;
  auto requeue_from = [&](std::size_t from) {
    for (std::size_t j = from; j < round.size(); ++j) w_.requeue(round[j]);
  };
  // Pipelines of up to batch_size positions, per_call of them per EVALSHA, two in flight: the
  // next one is built and sent while Redis executes the previous one.
  const std::size_t per_call = std::max<std::size_t>(1, w_.cfg_.positions_per_call);
  struct Chunk {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> items;  // (slot, version written)
    std::vector<std::int64_t> updated_at;                        // its apply time (sync lag)
    std::vector<std::size_t> call_end;                           // items index after each call
  };
  Chunk chunks[2];
  int inflight = -1;  // the chunk whose replies are still to be read
  auto fail_all = [&](const std::string& why) {
    if (!why.empty()) w_.lost_connection(why);
    for (const Chunk& c : chunks) {
      for (const auto& [slot, ver] : c.items) w_.requeue(slot);
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
    const std::int64_t now_rt = realtime_ns();
    std::size_t from = 0;
    for (std::size_t k = 0; k < c.call_end.size(); ++k) {
      for (std::size_t j = from; j < c.call_end[k]; ++j) {
        const auto [s, ver] = c.items[j];
        if (!ok[k]) {
          w_.requeue(s);
          refused = true;
          continue;
        }
        // release: pairs with the apply thread's acquire load before it evicts this slot
        store_release(&w_.v_.book[s].synced_version, ver);
        w_.synced_max_ = std::max(w_.synced_max_, ver);
        w_.count_written(c.updated_at[j], now_rt);
      }
      if (ok[k]) SyncWorker::Counted::add(w_.counted_.transactions);
      from = c.call_end[k];
    }
    c.items.clear();
    c.updated_at.clear();
    c.call_end.clear();
    return true;
  };
  for (int cur = 0;; cur ^= 1) {
    Chunk& c = chunks[cur];
    call_.clear();
    auto send_call = [&]() -> bool {
      if (call_.positions() == 0) return true;
      const bool sent = static_cast<bool>(call_.append_to(w_.client_, upsert_sha_));
      call_.clear();
      c.call_end.push_back(c.items.size());
      return sent;
    };
    bool sent = true;
    while (sent && next < round.size() && c.items.size() < w_.batch_size_) {
      const std::uint32_t s = round[next++];
      if (!read_bounded(w_.v_.slots[s], words, kPayloadWords)) {
        w_.requeue(s);  // mid-write for a long time (a stopped writer?): later
        continue;
      }
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      if (p.ns == kFreeNamespace || p.ns >= w_.fmt_.namespaces().size())
        continue;  // removed meanwhile
      // relaxed: only this thread stores it
      const std::uint64_t synced = load_relaxed(&w_.v_.book[s].synced_version);
      if (p.version <= synced) continue;  // Redis has it
      call_.add(w_.fmt_, p);
      c.items.emplace_back(s, p.version);
      c.updated_at.push_back(p.updated_at_ns);
      if (call_.positions() == per_call) sent = send_call();
    }
    if (sent) sent = send_call();
    if (!sent) return fail_all("redis " + redis_endpoint(w_.cfg_) + ": cannot queue a command");
    if (!c.call_end.empty()) {
      if (auto w = w_.client_.send(); !w) return fail_all(w.error());
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

}  // namespace poscache::detail
