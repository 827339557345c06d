#include "writer/follow/follower.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <thread>
#include <unordered_map>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "writer/journal.hpp"
#include "writer/redis/warm_start.hpp"

namespace poscache::detail {

using namespace shm;

namespace {

std::uint64_t to_u64(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string_view str(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
             ? std::string_view(r->str, r->len)
             : std::string_view();
}

// What XINFO STREAM says (RESP2: a flat array of name, value).
struct StreamInfo {
  bool exists = false;
  StreamId last_generated;
  std::uint64_t entries_added = 0;  // every entry ever added
  std::uint64_t length = 0;         // the entries it holds: the others were trimmed (or deleted)
};

StreamInfo stream_info(const redisReply* r) {
  StreamInfo s;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return s;  // ERR no such key
  s.exists = true;
  for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
    const std::string_view name = str(r->element[i]);
    const redisReply* v = r->element[i + 1];
    if (name == "last-generated-id") s.last_generated = StreamId::parse(str(v));
    if (name == "entries-added" && v->type == REDIS_REPLY_INTEGER)
      s.entries_added = static_cast<std::uint64_t>(v->integer);
    if (name == "length" && v->type == REDIS_REPLY_INTEGER)
      s.length = static_cast<std::uint64_t>(v->integer);
  }
  return s;
}

}  // namespace

StreamId StreamId::parse(std::string_view text) {
  StreamId id;
  const std::size_t dash = text.find('-');
  id.ms = to_u64(text.substr(0, dash));
  if (dash != std::string_view::npos) id.seq = to_u64(text.substr(dash + 1));
  return id;
}

std::string StreamId::text() const {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%llu-%llu", static_cast<unsigned long long>(ms),
                static_cast<unsigned long long>(seq));
  return buf;
}

Follower::Follower(const RedisConfig& config, std::vector<NamespaceSpec> namespaces, Table& table,
                   LogSink log, std::function<void(std::int64_t)> on_applied)
    : cfg_(config),
      fmt_(config.prefix, std::move(namespaces)),
      t_(table),
      log_(std::move(log)),
      on_applied_(std::move(on_applied)),
      lease_(config),
      key_(fmt_.changes_key()) {
  for (const std::string& name : cfg_.unsynced_namespaces) {
    if (auto id = fmt_.namespace_id(name)) unsynced_mask_ |= 1u << *id;
  }
}

void Follower::set_state(FollowState s) {
  store_relaxed(&t_.header().follow_state, static_cast<std::uint32_t>(s));
}

void Follower::lost(const std::string& why) {
  client_.reset();
  set_state(FollowState::down);
  backoff_ = std::clamp(backoff_ * 2, cfg_.reconnect_min, cfg_.reconnect_max);
  next_connect_ = std::chrono::steady_clock::now() + backoff_;
  if (why != last_error_) {
    say(LogLevel::error, "follow: redis " + redis_endpoint(cfg_) + ": " + why + " (retrying)");
    last_error_ = why;
  }
}

bool Follower::connect() {
  auto c = RedisClient::connect(cfg_);
  if (!c) {
    lost(c.error());
    return false;
  }
  client_.emplace(std::move(*c));
  backoff_ = std::chrono::milliseconds(0);
  if (!last_error_.empty())
    say(LogLevel::info, "follow: redis " + redis_endpoint(cfg_) + " reachable again");
  last_error_.clear();
  return true;
}

Expected<bool> Follower::start() {
  if (!connect()) return fail("follow: " + last_error_);
  if (!reload("start")) return fail("follow: the first load failed: " + last_error_);
  return true;
}

bool Follower::run_tx(Reply& exec) {
  const std::size_t replies = tx_.size();  // +OK, +QUEUED ..., then EXEC's
  if (auto a = tx_.append_to(*client_); !a) {
    lost(a.error());
    return false;
  }
  for (std::size_t i = 0; i < replies; ++i) {
    auto r = client_->read_reply();
    if (!r) {
      lost(r.error());
      return false;
    }
    if (i + 1 == replies) exec = std::move(*r);
  }
  return true;
}

bool Follower::reload(const std::string& why) {
  set_state(FollowState::loading);
  // Where the stream is, before the load: what changes from here on comes again after it.
  tx_.clear();
  tx_.cmd("MULTI");
  tx_.cmd("XINFO").add("STREAM").add(key_);
  tx_.cmd("EXEC");
  Reply exec;
  if (!run_tx(exec)) return false;
  StreamInfo at;
  if (exec->type == REDIS_REPLY_ARRAY && exec->elements == 1) at = stream_info(exec->element[0]);
  if (!at.exists) {
    say(LogLevel::warn, "follow: no change stream " + key_ +
                            " yet (a writer with change_stream_retention 0, or none has written): "
                            "loading the positions and waiting for it");
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::uint8_t> seen(t_.capacity(), 0);
  t_.begin_batch();
  std::uint64_t applied = 0;
  auto rep = warm_start(
      cfg_, fmt_,
      [&](const SlotPayload& p) -> std::uint64_t {
        std::uint32_t s = kNil;
        if (t_.apply_synced(p, &s)) ++applied;
        if (s != kNil) seen[s] = 1;
        return 0;
      },
      [&] {  // every 128 positions: publish what is loaded, keep the heartbeat going
        t_.end_batch();
        store_relaxed(&t_.header().heartbeat_ns, t_.now());
        t_.begin_batch();
      },
      log_);
  if (!rep) {
    t_.end_batch();
    lost(rep.error());
    return false;
  }
  // What the load did not find is gone from Redis (or was never there).
  std::vector<std::uint32_t> gone;
  t_.for_each_live([&](std::uint32_t s, std::uint16_t) {
    if (!seen[s]) gone.push_back(s);
  });
  for (const std::uint32_t s : gone) t_.remove(s, Table::Removal::invalidation);
  t_.end_batch();
  last_ = at.exists ? at.last_generated : StreamId{};
  position_ = at.exists ? at.entries_added : 0;
  ++reloads_;
  store_relaxed(&t_.header().follow_reloads, reloads_);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char line[256];
  std::snprintf(line, sizeof line,
                "follow: loaded %llu positions (%llu changed here, %zu removed) in %.2f s (%s); "
                "tailing %s from %s",
                static_cast<unsigned long long>(rep->loaded),
                static_cast<unsigned long long>(applied), gone.size(), secs, why.c_str(),
                key_.c_str(), last_.text().c_str());
  say(LogLevel::info, line);
  set_state(FollowState::following);
  return true;
}

bool Follower::lease_vacant() {
  if (!client_) return false;
  auto v = lease_.vacant(*client_);
  if (!v) {
    lost(v.error());
    return false;
  }
  return *v;
}

std::size_t Follower::step(std::chrono::milliseconds wait) {
  if (!client_) {
    if (std::chrono::steady_clock::now() < next_connect_) {
      std::this_thread::sleep_for(std::min(wait, std::chrono::milliseconds(10)));
      return 0;
    }
    // Reachable again: the stream tells whether it still continues from where this stopped.
    if (!connect()) return 0;
    set_state(FollowState::following);
  }
  std::size_t applied = 0;
  if (!read_batch(applied) || applied > 0) return applied;
  // Nothing new: wait for the next entry (it is read by the next step). (BLOCK 0 waits forever.)
  if (wait.count() <= 0) return 0;
  Args a;
  a.add("XREAD").add("COUNT").add("1").add("BLOCK").add(static_cast<std::uint64_t>(wait.count()));
  a.add("STREAMS").add(key_).add(last_.text());
  if (auto r = client_->command(a); !r) lost(r.error());
  return 0;
}

bool Follower::read_batch(std::size_t& applied) {
  // Entries per round trip: each holds up to batch_size positions (a transaction's).
  constexpr std::size_t kBatch = 16;
  tx_.clear();
  tx_.cmd("MULTI");
  const std::string after = last_.text();
  tx_.cmd("XRANGE")
      .add(key_)
      .add_concat({"(", after})
      .add("+")
      .add("COUNT")
      .add(static_cast<std::uint64_t>(kBatch));
  tx_.cmd("XINFO").add("STREAM").add(key_);
  tx_.cmd("EXEC");
  Reply exec;
  if (!run_tx(exec)) return false;
  if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2) {
    lost("MULTI XRANGE XINFO: " + reply_text(exec.get()));
    return false;
  }
  const redisReply* entries = exec->element[0];
  const StreamInfo info = stream_info(exec->element[1]);
  if (entries->type != REDIS_REPLY_ARRAY) {
    lost("XRANGE " + key_ + ": " + reply_text(entries));
    return false;
  }
  // Can the stream take this follower further from where it is?
  if (!info.exists) {
    if (position_ == 0) return true;  // none yet: wait for the first entry
    return reload("the change stream " + key_ + " is gone (Redis lost its data?)");
  }
  // Trimming removes the oldest entries: the first entries_added - length of them are gone. This
  // follower has applied the first position_; more gone means some it never saw. (Redis 7.0's
  // max-deleted-entry-id counts XDEL only, not trimming.)
  if (info.entries_added - std::min(info.length, info.entries_added) > position_) {
    say(LogLevel::warn, "follow: the change stream was trimmed past entry " + last_.text() + " (" +
                            std::to_string(info.entries_added - info.length - position_) +
                            " entries it had not read are gone): loading everything again");
    return reload("trimmed past");
  }
  const std::size_t n = entries->elements;
  if (n < kBatch && position_ + n != info.entries_added) {
    say(LogLevel::warn, "follow: the change stream does not continue from entry " + last_.text() +
                            " (" + std::to_string(info.entries_added) + " entries added, " +
                            std::to_string(position_ + n) + " expected): loading everything again");
    return reload("stream discontinuous");
  }
  if (n == 0) return true;

  // The hashes the upserts name, fetched together (one HGETALL per key).
  fetch_.clear();
  std::unordered_map<std::string, std::size_t> at;  // position key -> index in fetch_
  struct Item {
    enum Kind { upsert, removal, pattern, skip } kind = skip;
    std::size_t fetch = 0;
    RemovalEvent event;
  };
  std::vector<Item> items;
  items.reserve(n);
  auto field = [](const redisReply* kv, std::string_view name) -> std::string_view {
    for (std::size_t j = 0; j + 1 < kv->elements; j += 2)
      if (str(kv->element[j]) == name) return str(kv->element[j + 1]);
    return {};
  };
  std::size_t malformed = 0;
  // One position's change: "ns:account:instrument" and "+<version>" (upsert) or "-<version>".
  auto position = [&](std::string_view key, std::string_view change) {
    const std::size_t a = key.find(':'), b = key.find(':', a + 1);
    const std::uint64_t version = change.size() > 1 ? to_u64(change.substr(1)) : 0;
    if (b == std::string_view::npos || version == 0 || (change[0] != '+' && change[0] != '-')) {
      ++malformed;
      return;
    }
    const std::string_view ns = key.substr(0, a), account = key.substr(a + 1, b - a - 1),
                           instrument = key.substr(b + 1);
    const auto id = fmt_.namespace_id(ns);
    if (!id || ((unsynced_mask_ >> *id) & 1u) != 0) return;  // not kept here
    if (!valid_account(account) || !valid_instrument(instrument)) {
      ++malformed;
      return;
    }
    Item& it = items.emplace_back();
    if (change[0] == '-') {
      it.kind = Item::removal;
      it.event = erase_of(KeyRef{*id, std::string(account), std::string(instrument)}, version);
      return;
    }
    auto [pos, fresh] = at.try_emplace(fmt_.position_key(ns, account, instrument), fetch_.size());
    if (fresh) {
      fetch_.push_back(
          {ParsedKey{std::string(ns), std::string(account), std::string(instrument)}, *id});
    }
    it.kind = Item::upsert;
    it.fetch = pos->second;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const redisReply* kv = entries->element[i]->element[1];
    const std::string_view kind = field(kv, "kind");
    if (kind == "changes") {
      for (std::size_t j = 2; j + 1 < kv->elements; j += 2)
        position(str(kv->element[j]), str(kv->element[j + 1]));
      continue;
    }
    const std::string_view ns = field(kv, "ns");
    const std::uint64_t version = to_u64(field(kv, "version"));
    const auto id = ns.empty() ? std::nullopt : fmt_.namespace_id(ns);
    if (!ns.empty() && (!id || ((unsynced_mask_ >> *id) & 1u) != 0)) continue;  // not kept here
    if (kind == "pattern" && version != 0) {
      const std::string_view scope = field(kv, "scope"), pattern = field(kv, "pattern");
      using K = RemovalEvent::Kind;
      Item it;
      it.kind = Item::pattern;
      if (scope == "account" && valid_account(pattern)) {
        it.event = pattern_of(K::account, version, id, pattern);
      } else if (scope == "namespace" && id) {
        it.event = pattern_of(K::ns, version, id, {});
      } else if (scope == "glob" && !pattern.empty()) {
        it.event = pattern_of(K::glob, version, std::nullopt, pattern);
      } else if (scope == "all") {
        it.event = pattern_of(K::all, version, std::nullopt, {});
      } else {
        ++malformed;
        continue;
      }
      items.push_back(std::move(it));
      continue;
    }
    ++malformed;
  }
  if (malformed > 0) {
    say(LogLevel::warn, "follow: skipped " + std::to_string(malformed) + " malformed entries of " +
                            key_ + " (not written by poscache?)");
  }
  // Fetched and applied in slices of up to batch_size positions, each slice one change to
  // readers, the heartbeat stored between them: a read of many large entries (a transaction
  // carries up to 1024 positions) keeps the follower alive to its readers. Items stay in entry
  // order: a slice ends before the first upsert whose hash is not fetched yet.
  const std::size_t slice = std::max<std::size_t>(1, cfg_.batch_size);
  std::vector<std::optional<SlotPayload>> fetched(fetch_.size());
  std::int64_t max_lag = 0;
  std::size_t item = 0, fetched_to = 0;
  Args a;
  while (item < items.size()) {
    const std::size_t f1 = std::min(fetch_.size(), fetched_to + slice);
    for (std::size_t i = fetched_to; i < f1; ++i) {
      const ParsedKey& k = fetch_[i].first;
      a.clear();
      a.add("HGETALL").add(fmt_.position_key(k.ns, k.account, k.instrument));
      if (auto r = client_->append(a); !r) {
        lost(r.error());
        return false;
      }
    }
    const std::int64_t now_wall = realtime_ns();
    for (std::size_t i = fetched_to; i < f1; ++i) {
      auto r = client_->read_reply();
      if (!r) {
        lost(r.error());
        return false;
      }
      if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements == 0) continue;  // removed since
      auto p = fmt_.decode(fetch_[i].first, fetch_[i].second, r->get());
      if (!p) {
        say(LogLevel::warn, "follow: skipped " + p.error());
        continue;
      }
      const std::int64_t ttl = fmt_.namespaces()[fetch_[i].second].expire_after.count();
      if (ttl > 0 && p->updated_at_ns + ttl <= now_wall) continue;  // expired: Redis drops it too
      fetched[i] = *p;
    }
    fetched_to = f1;
    t_.begin_batch();
    for (; item < items.size(); ++item) {
      const Item& it = items[item];
      if (it.kind == Item::upsert) {
        if (it.fetch >= f1) break;  // the next slice's
        const auto& p = fetched[it.fetch];
        if (p && t_.apply_synced(*p)) {
          const std::int64_t lag = t_.now() - p->updated_at_ns;
          max_lag = std::max(max_lag, lag);
          if (on_applied_) on_applied_(lag);
        }
      } else if (it.kind == Item::removal || it.kind == Item::pattern) {
        t_.apply_removal(it.event);
      }
    }
    t_.end_batch();
    store_relaxed(&t_.header().heartbeat_ns, t_.now());
  }
  last_ = StreamId::parse(str(entries->element[n - 1]->element[0]));
  position_ += n;
  applied = n;
  SegmentHeader& h = t_.header();
  store_relaxed(&h.follow_entries, load_relaxed(&h.follow_entries) + n);
  if (max_lag > 0) store_relaxed(&h.follow_lag_ns, max_lag);
  return true;
}

}  // namespace poscache::detail
