// The writer: a facade that wires its components together. Each has one job and a file of its
// own:
//   writer/input.hpp       the input rules: yes/no on the hot path, the message on the slow one
//   writer/table.hpp       the apply engine: slot writes (undo, seqlock), index, lists, removals
//   writer/journal.hpp     the removal journal: codec, append, validation, replay
//   writer/lifecycle.hpp   open: create, re-attach (repairs, rebuilds), replace, retire
//   writer/redis/          the Redis mirror: hand-off, sync thread, format, client, warm start
//   writer/follow/         a follower: the segment kept from another writer's Redis
//   writer/writer_lock.hpp one writer per segment
#include "poscache/writer.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/slot_codec.hpp"
#include "writer/follow/follower.hpp"
#include "writer/input.hpp"
#include "writer/journal.hpp"
#include "writer/lifecycle.hpp"
#include "writer/producer_table.hpp"
#include "writer/reader_table.hpp"
#include "writer/recency_log.hpp"
#include "writer/redis/redis_sync.hpp"
#include "writer/redis/warm_start.hpp"
#include "writer/table.hpp"
#include "writer/table_detail.hpp"
#include "writer/writer_lock.hpp"

namespace poscache {

using namespace shm;
using detail::bump;

std::string_view to_string(ApplyStatus s) noexcept {
  switch (s) {
    case ApplyStatus::inserted:
      return "inserted";
    case ApplyStatus::updated:
      return "updated";
    case ApplyStatus::erased:
      return "erased";
    case ApplyStatus::not_found:
      return "not_found";
    case ApplyStatus::stale_source:
      return "stale_source";
    case ApplyStatus::bad_input:
      return "bad_input";
  }
  return "unknown";
}

struct Writer::Impl {
  WriterConfig cfg;
  detail::InputRules rules;
  detail::WriterLock lock;
  Mapping mapping;
  detail::ProducerTable producers;
  detail::ReaderTable readers;  // where reader processes count their reads (reaped in tick())
  std::int64_t next_reap = 0;
  detail::Table table;
  detail::Journal journal;
  std::unique_ptr<detail::RedisSync> sync;     // null without Redis, and in a follower
  std::unique_ptr<detail::Follower> follower;  // only in a follower (WriterConfig::follow)
  std::int64_t next_lease_check = 0;           // a standby's next look at the lease (monotonic)
  detail::WarmStartReport warm;
  bool reattached = false;
  std::uint64_t huge_page_bytes = 0;  // of the segment, mapped with 2 MiB pages (at open)
  std::int64_t last_heartbeat = 0;

  explicit Impl(const WriterConfig& c) : cfg(c), rules(cfg.namespaces) {}
  SegmentHeader& header() const noexcept { return table.header(); }
  void start_redis(bool empty_segment, detail::Journal::Scan scan);
  std::unique_ptr<detail::RedisSync> make_sync();
  std::uint32_t unsynced_mask() const;
  void maybe_promote();
  void warm_start(const RedisConfig& rc, bool sync_running);
  void queue_unsynced();
};

// With Redis: the journal's leftovers first, a warm start on an empty segment (before it turns
// ready), then the sync thread.
void Writer::Impl::start_redis(bool empty_segment, detail::Journal::Scan scan) {
  const auto& pending = scan.valid;
  if (!cfg.redis) {
    if (!pending.empty()) {
      cfg.log(LogLevel::warn, std::to_string(pending.size()) +
                                  " removals in the segment's journal are not in Redis yet; "
                                  "they stay there until a writer with Redis configured writes "
                                  "them");
    }
    return;
  }
  const RedisConfig& rc = *cfg.redis;
  if (cfg.follow) {  // no lease, no sync: the positions and the stream of the writer that has it
    if (!pending.empty()) {
      cfg.log(LogLevel::warn, std::to_string(pending.size()) +
                                  " removals in the segment's journal are not in Redis yet; a "
                                  "follower writes nothing to Redis: they are dropped");
    }
    follower =
        std::make_unique<detail::Follower>(rc, cfg.namespaces, table, cfg.log, cfg.on_follow);
    if (auto ok = follower->start(); !ok) {
      throw Error(ok.error() + " (the segment stays initializing)");
    }
    return;
  }
  sync = make_sync();
  table.set_sync(&sync->handoff(), unsynced_mask());
  // The lease before anything is loaded or written: a second writer on the prefix stops here,
  // told who holds it. (Redis unreachable: the sync thread takes it once it connects.)
  if (auto lease = sync->worker().open_lease(); !lease) throw Error(lease.error());
  for (const auto& [n, e] : pending) sync->handoff().replay(detail::from_entry(*e, n), table.now());
  for (const std::uint64_t n : scan.invalid) sync->worker().skip(n);  // reported: tail passes
  bool started = false;
  if (!pending.empty()) {
    cfg.log(LogLevel::info, "journal: " + std::to_string(pending.size()) +
                                " removals a previous writer left go to Redis first");
  }
  if (empty_segment && rc.warm_start) {
    if (!pending.empty()) {
      // Load only after Redis has the removals: a warm start before them would bring back
      // what they removed.
      sync->start();
      started = true;
      if (!sync->flush(rc.connect_timeout + rc.close_timeout)) {
        throw Error("warm start: " + std::to_string(pending.size()) +
                    " removals left in the segment's journal could not be written to Redis "
                    "first (the segment stays initializing; start with --cold-start, or "
                    "RedisConfig::warm_start = false, to start without loading)");
      }
    }
    warm_start(rc, started);
  }
  if (reattached) queue_unsynced();
  if (!started) sync->start();
}

std::unique_ptr<detail::RedisSync> Writer::Impl::make_sync() {
  const Geometry g = geometry_for(table.capacity());
  auto* base = static_cast<std::byte*>(mapping.base());
  return std::make_unique<detail::RedisSync>(
      *cfg.redis, cfg.namespaces,
      detail::SegmentView{&header(), reinterpret_cast<const Slot*>(base + g.slots_offset),
                          reinterpret_cast<SlotBook*>(base + g.book_offset), table.capacity()},
      journal, cfg.log);
}

// sync = none: never written to Redis, nor loaded from it
std::uint32_t Writer::Impl::unsynced_mask() const {
  std::uint32_t unsynced = 0;
  for (const std::string& name : cfg.redis->unsynced_namespaces) {
    for (std::size_t i = 0; i < cfg.namespaces.size(); ++i)
      if (cfg.namespaces[i].name == name) unsynced |= 1u << i;
  }
  return unsynced;
}

// A standby whose writer's lease is free becomes the writer: everything the stream holds first,
// then the lease (taken by the sync thread's connection, which its fence then uses), what the
// stream got meanwhile (nothing, unless a writer wrote between the two), then the sync. Looked
// at every third of the lease's ttl (at most every second): a dead writer's lease has expired
// at most a ttl after its last renewal, so the standby takes over within ttl + ttl / 3, and at
// once when the dead writer was a process of this host.
void Writer::Impl::maybe_promote() {
  const std::int64_t now = monotonic_ns();
  if (now < next_lease_check) return;
  const std::int64_t every = std::chrono::nanoseconds(cfg.redis->lease_ttl).count() / 3;
  next_lease_check = now + std::min<std::int64_t>(every, 1'000'000'000);
  if (!follower->lease_vacant()) return;
  for (int i = 0; i < 10'000 && follower->step(std::chrono::milliseconds(0)) > 0; ++i) {
  }
  auto s = make_sync();
  auto lease = s->worker().open_lease();
  const std::uint64_t epoch = load_relaxed(&header().redis_lease_epoch);
  if (!lease || epoch == 0) {
    s.reset();
    store_relaxed(&header().redis_lease_epoch, std::uint64_t{0});
    store_relaxed(&header().redis_state, static_cast<std::uint32_t>(RedisState::off));
    cfg.log(LogLevel::info, "standby: the lease was free but another took it (" +
                                (lease ? std::string("redis unreachable") : lease.error()) +
                                "): following on");
    return;
  }
  for (int i = 0; i < 10'000 && follower->step(std::chrono::milliseconds(0)) > 0; ++i) {
  }
  follower.reset();
  store_relaxed(&header().follow_state, static_cast<std::uint32_t>(FollowState::none));
  // Versions go on above the old writer's, and above the wall clock as any new writer's.
  table.area().next_version =
      std::max(table.area().next_version, static_cast<std::uint64_t>(realtime_ns()));
  sync = std::move(s);
  table.set_sync(&sync->handoff(), unsynced_mask());
  sync->start();
  cfg.log(LogLevel::warn, "standby: promoted: the lease of '" + cfg.redis->prefix +
                              "' is ours (epoch " + std::to_string(epoch) +
                              "); this process is the writer now");
}

void Writer::Impl::warm_start(const RedisConfig& rc, bool sync_running) {
  detail::RedisFormat fmt(rc.prefix, cfg.namespaces);
  detail::WarmLoader loader(table);
  // A load longer than a third of the lease's ttl must not let it lapse: the sync thread
  // renews it once it runs; until then, this thread does (and keeps the heartbeat going).
  const std::function<void()> keep_going = [this, sync_running] {
    store_relaxed(&header().heartbeat_ns, table.now());
    if (!sync_running) sync->worker().keep_lease();
  };
  auto rep = detail::warm_start(
      rc, fmt, [&loader](const SlotPayload& p) { return loader.restore(p); }, keep_going, cfg.log);
  if (!rep) {
    throw Error(rep.error() +
                " (the segment stays initializing; start with --cold-start, or "
                "RedisConfig::warm_start = false, to start empty)");
  }
  // LRU order by updated_at, as if the positions had arrived in that order
  table.rebuild_lists(keep_going);
  warm = *rep;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f", warm.seconds);
  cfg.log(LogLevel::info,
          "warm start: loaded " + std::to_string(warm.loaded) + " positions in " + secs + " s");
  if (warm.beyond_capacity > 0) {
    cfg.log(LogLevel::warn, "warm start: " + std::to_string(warm.beyond_capacity) +
                                " positions did not fit in capacity " +
                                std::to_string(table.capacity()) +
                                " and stay only in Redis (the least recently updated)");
  }
  if (warm.expired + warm.unknown_namespace + warm.malformed + warm.unsynced > 0) {
    cfg.log(LogLevel::warn, "warm start: skipped " + std::to_string(warm.expired) + " expired, " +
                                std::to_string(warm.unknown_namespace) +
                                " of unknown namespaces, " + std::to_string(warm.malformed) +
                                " malformed, " + std::to_string(warm.unsynced) +
                                " of namespaces not synced (sync = none)");
  }
}

// Re-attached: every slot whose version Redis has not acknowledged goes to the sync thread
// (the batches a killed writer held in its memory are gone; the slots are not).
void Writer::Impl::queue_unsynced() {
  const std::int64_t t = table.now();
  for (std::uint32_t s = 0; s < table.capacity(); ++s) {
    const SlotPayload& p = table.peek(s);
    if (p.ns != kFreeNamespace && table.syncs(p.ns) && p.version > table.book(s).synced_version)
      sync->handoff().mark(s, t, detail::kSlotNewKey | detail::kSlotFieldsDropped);  // unknown
  }
}

// =============================================================================================
Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Writer::~Writer() {
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() only touches mapped memory
  }
}

namespace {
// Every check of a WriterConfig that needs no segment; throws Error naming the setting and value.
void check_config(const WriterConfig& config) {
  std::string msg;
  if (!valid_segment_name(config.segment, msg)) throw Error(msg);
  // The segment's slot references and the recency log's stamps both bound the capacity.
  constexpr std::uint64_t kLimit =
      std::min<std::uint64_t>(kMaxCapacity, detail::RecencyLog::kMaxCapacity);
  if (config.capacity == 0 || config.capacity > kLimit) {
    throw Error("capacity " + std::to_string(config.capacity) + " is out of range: 1 to " +
                std::to_string(kLimit));
  }
  if (config.namespaces.empty())
    throw Error("no namespaces configured: a segment needs at least one");
  if (config.namespaces.size() > kMaxNamespaces) {
    throw Error(std::to_string(config.namespaces.size()) + " namespaces configured: the limit is " +
                std::to_string(kMaxNamespaces));
  }
  for (std::size_t i = 0; i < config.namespaces.size(); ++i) {
    if (auto r = validate(config.namespaces[i]); !r) throw Error(r.error());
    for (std::size_t j = 0; j < i; ++j) {
      if (config.namespaces[j].name == config.namespaces[i].name) {
        throw Error("namespace '" + config.namespaces[i].name + "' is configured twice");
      }
    }
  }
  if (config.heartbeat_interval.count() <= 0) throw Error("heartbeat_interval must be positive");
  if ((config.mode & ~0777u) != 0 || (config.mode & 0600u) != 0600u) {
    char octal[16];
    std::snprintf(octal, sizeof octal, "0%o", static_cast<unsigned>(config.mode));
    throw Error(std::string("segment mode ") + octal +
                " must grant its owner read and write and use only permission bits (e.g. 0640)");
  }

  if ((config.follow || config.standby) && !config.redis)
    throw Error("follow: a follower needs Redis configured (the writer's prefix to follow)");
  if (config.redis) {
    if (auto v = validate(*config.redis); !v) throw Error(v.error());
    for (const std::string& name : config.redis->unsynced_namespaces) {
      if (std::none_of(config.namespaces.begin(), config.namespaces.end(),
                       [&](const NamespaceSpec& n) { return n.name == name; })) {
        throw Error("redis: unsynced namespace '" + name + "' is not a configured namespace (" +
                    shm::namespace_names(config.namespaces) + ")");
      }
    }
  }
}
}  // namespace

Expected<bool> validate(const WriterConfig& config) {
  try {
    check_config(config);
  } catch (const Error& e) {
    return fail(e.what());
  }
  return true;
}

std::unique_ptr<Writer> Writer::open(const WriterConfig& config) {
  check_config(config);
  auto impl = std::make_unique<Impl>(config);
  WriterConfig& cfg = impl->cfg;
  if (cfg.standby) cfg.follow = true;
  if (!cfg.log) {
    cfg.log = [](LogLevel level, std::string_view text) {
      static constexpr const char* kName[] = {"debug", "info", "warn", "error"};
      std::cerr << "poscache-writer [" << kName[static_cast<int>(level)] << "] " << text << '\n';
    };
  }
  impl->lock = detail::WriterLock::acquire(cfg.segment, cfg.mode);
  detail::OpenedSegment opened = detail::open_segment(cfg, realtime_ns());
  impl->mapping = std::move(opened.mapping);
  auto* base = static_cast<std::byte*>(impl->mapping.base());
  const Geometry g = geometry_for(static_cast<SegmentHeader*>(impl->mapping.base())->capacity);
  impl->table.bind(base, g);
  impl->table.set_change_ring(cfg.change_ring);
  impl->journal = detail::Journal(base, g);
  impl->producers =
      detail::ProducerTable(reinterpret_cast<ProducerStatus*>(base + g.producers_offset));
  impl->huge_page_bytes = detail::report_pages(impl->mapping, cfg, opened.created);
  detail::Journal::Scan scan;
  // A predecessor that closed cleanly published every change it made; one that died may not have.
  const bool predecessor_died =
      !opened.created &&
      load_relaxed(&impl->header().state) != static_cast<std::uint32_t>(SegmentState::closed);
  if (!opened.created) {
    impl->reattached = true;
    scan = detail::reattach(impl->table, impl->journal, cfg.log);
    impl->producers.orphan_all(impl->table.now());
  }
  const std::int64_t t = impl->table.now();
  detail::stamp_writer(impl->header(), cfg.heartbeat_interval, t);
  impl->last_heartbeat = t;
  impl->start_redis(opened.created || load_relaxed(&impl->header().counters.live) == 0,
                    std::move(scan));
  impl->readers =
      detail::ReaderTable::open(cfg.segment, impl->header().generation, cfg.mode, cfg.log);
  // After the repairs and the warm start: a reader that resyncs at the marker sees all of it.
  if (predecessor_died) impl->table.record_restart();
  store_release(&impl->header().state, static_cast<std::uint32_t>(SegmentState::ready));
  return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

// ---- input ------------------------------------------------------------------------------------
Expected<NamespaceId> Writer::namespace_id(std::string_view ns) const {
  return impl_->rules.namespace_id(ns);
}

Expected<KeyRef> Writer::make_key(std::string_view ns, std::string_view account,
                                  std::string_view instrument) const {
  auto id = namespace_id(ns);
  if (!id) return fail(id.error());
  KeyRef k{*id, std::string(account), std::string(instrument)};
  if (std::string why = impl_->rules.problem(k); !why.empty()) return fail(why);
  return k;
}

Expected<Update> Writer::make_update(
    std::string_view ns, std::string_view account, std::string_view instrument,
    std::span<const std::pair<std::string_view, std::string_view>> fields, std::uint64_t source_seq,
    UpdateMode mode) const {
  return impl_->rules.build(ns, account, instrument, fields, source_seq, mode);
}

Expected<Update> Writer::make_update(NamespaceId ns, std::string_view account,
                                     std::string_view instrument, std::uint32_t mask,
                                     const int128* values, std::uint64_t source_seq,
                                     UpdateMode mode) const {
  return impl_->rules.build(ns, account, instrument, mask, values, source_seq, mode);
}

// ---- changes ----------------------------------------------------------------------------------
// A follower's positions come from Redis only: a change of its own would never reach Redis and
// would be overwritten or removed by the next load.
[[noreturn]] void Writer::refuse_in_follower() const {
  throw Error("segment '" + impl_->cfg.segment +
              "' is kept by a follower (WriterConfig::follow, poscache-writer --follow): its "
              "positions change only through the writer that holds the Redis lease");
}

ApplyResult Writer::upsert(const Update& update) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (!impl_->rules.check(update).ok()) {  // (the result carries no message: none is built)
    bump(impl_->header().counters.rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return impl_->table.upsert(update);
}

void Writer::upsert_batch(std::span<const Update> updates, std::span<ApplyResult> results) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (results.size() < updates.size())
    throw Error("upsert_batch: results span is shorter than updates");
  // Validate each first (as upsert() does); bad ones are reported, the rest applied in order.
  std::size_t start = 0;
  for (std::size_t i = 0; i <= updates.size(); ++i) {
    const bool bad = i < updates.size() && !impl_->rules.check(updates[i]).ok();
    if (i == updates.size() || bad) {
      impl_->table.upsert_batch(updates.subspan(start, i - start), results.data() + start);
      if (bad) {
        bump(impl_->header().counters.rejects);
        results[i] = ApplyResult{ApplyStatus::bad_input, 0, false};
      }
      start = i + 1;
    }
  }
}

void Writer::upsert_batch(std::span<const Update> updates,
                          std::span<const std::uint64_t> key_hashes,
                          std::span<ApplyResult> results) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (results.size() < updates.size() || key_hashes.size() < updates.size())
    throw Error("upsert_batch: results or key_hashes span is shorter than updates");
  std::size_t start = 0;
  for (std::size_t i = 0; i <= updates.size(); ++i) {
    const bool bad = i < updates.size() && !impl_->rules.check_shape(updates[i]).ok();
    if (i == updates.size() || bad) {
      if (i - start < 4) {  // too few to pipeline: the pipeline's fill and drain cost more
        for (std::size_t k = start; k < i; ++k)
          results[k] = impl_->table.upsert_claimed(updates[k], key_hashes[k]);
      } else {
        impl_->table.upsert_batch(updates.subspan(start, i - start), results.data() + start,
                                  key_hashes.data() + start);
      }
      if (bad) {
        bump(impl_->header().counters.rejects);
        results[i] = ApplyResult{ApplyStatus::bad_input, 0, false};
      }
      start = i + 1;
    }
  }
}

ApplyResult Writer::erase(const KeyRef& key) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (!impl_->rules.problem(key).empty()) {
    bump(impl_->header().counters.rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return impl_->table.erase(key);
}

std::size_t Writer::invalidate_account(std::string_view account, std::optional<NamespaceId> ns) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  return impl_->table.invalidate_account(account, ns);
}
std::size_t Writer::invalidate_namespace(NamespaceId ns) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (!impl_->rules.problem_of_namespace(ns).empty()) return 0;
  return impl_->table.invalidate_namespace(ns);
}
std::size_t Writer::invalidate_matching(std::string_view glob) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  if (std::string why = impl_->rules.problem_of_glob(glob); !why.empty()) throw Error(why);
  return impl_->table.invalidate_matching(glob);
}
std::size_t Writer::invalidate_all() {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  return impl_->table.invalidate_all();
}

BatchResult Writer::apply(std::span<const Op> ops) {
  if (impl_->follower) [[unlikely]]
    refuse_in_follower();
  BatchResult br;
  detail::Table& t = impl_->table;
  // 1. Check everything: a malformed op refuses the whole batch, nothing applied.
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (std::string err = impl_->rules.problem(ops[i]); !err.empty()) {
      bump(impl_->header().counters.rejects);
      br.error = "op " + std::to_string(i) + ": " + err + " (batch of " +
                 std::to_string(ops.size()) + " refused, nothing applied)";
      return br;
    }
  }
  // 2. Apply, announcing the batch with one change-sequence step.
  t.begin_batch();
  br.results.reserve(ops.size());
  for (const Op& op : ops) {
    ApplyResult r;
    if (const auto* u = std::get_if<Update>(&op)) {
      r = t.upsert(*u);
    } else if (const auto* e = std::get_if<Erase>(&op)) {
      r = t.erase(e->key);
    } else {
      if (const auto* a = std::get_if<InvalidateAccount>(&op)) {
        br.removed += t.invalidate_account(a->account, a->ns);
      } else if (const auto* n = std::get_if<InvalidateNamespace>(&op)) {
        br.removed += t.invalidate_namespace(n->ns);
      } else if (const auto* m = std::get_if<InvalidateMatching>(&op)) {
        br.removed += t.invalidate_matching(m->glob);
      } else {
        br.removed += t.invalidate_all();
      }
      r.status = ApplyStatus::erased;
    }
    br.results.push_back(r);
  }
  t.end_batch();
  br.applied = true;
  return br;
}

// ---- time -------------------------------------------------------------------------------------
void Writer::tick() {
  Impl& w = *impl_;
  const std::int64_t t = w.table.now();
  if (t - w.last_heartbeat >= w.cfg.heartbeat_interval.count()) heartbeat();
  w.table.expire(w.cfg.expire_budget);
  w.table.maybe_wake(t, w.cfg.wake_interval.count());
  if (w.sync) w.sync->handoff().maybe_hand_off(t);
  if (t >= w.next_reap) {  // readers that left or died: about once a second (T4)
    w.readers.reap();
    w.next_reap = t + 1'000'000'000;
  }
}

void Writer::heartbeat() {
  const std::int64_t t = impl_->table.now();
  store_relaxed(&impl_->header().heartbeat_ns, t);
  impl_->last_heartbeat = t;
}

void Writer::close() {
  if (!impl_ || impl_->mapping.base() == nullptr) return;
  Impl& w = *impl_;
  if (w.sync) {
    w.sync->stop();  // writes what is unsynced, for up to close_timeout
    w.table.set_sync(nullptr);
    w.sync.reset();
  }
  store_release(&w.header().state, static_cast<std::uint32_t>(SegmentState::closed));
  w.table.wake_readers(w.table.now());
  w.mapping = Mapping();
  w.lock.release();
}

std::size_t Writer::follow(std::chrono::milliseconds wait) {
  if (!impl_->follower) {
    throw Error("follow(): segment '" + impl_->cfg.segment +
                "' is not kept by a follower (WriterConfig::follow)");
  }
  const std::size_t n = impl_->follower->step(wait);
  if (impl_->cfg.standby && n == 0) impl_->maybe_promote();
  return n;
}

bool Writer::following() const noexcept {
  return impl_->follower != nullptr;
}

bool Writer::set_redis_password(std::string password) {
  if (!impl_->sync) return false;
  impl_->sync->worker().set_password(std::move(password));
  return true;
}

bool Writer::sync_redis(std::chrono::milliseconds timeout) {
  if (!impl_->sync) return true;
  return impl_->sync->flush(timeout);
}

std::uint64_t Writer::redis_ticket() const noexcept {
  return impl_->sync ? impl_->sync->handoff().ticket() : 0;
}
bool Writer::redis_acknowledged(std::uint64_t ticket) const noexcept {
  return impl_->sync && impl_->sync->handoff().acknowledged(ticket);
}
bool Writer::mirrors_to_redis() const noexcept {
  return impl_->sync != nullptr;
}

// The producer table lives in the segment: after close() there is none, and a ring source torn
// down after its writer (a destructor order) finds these calls harmless.
int Writer::producer_attach(std::string_view name, std::int64_t pid, std::uint32_t uid) {
  if (impl_->mapping.base() == nullptr) return -1;
  return impl_->producers.attach(name, pid, uid, impl_->table.now());
}
void Writer::producer_counts(int id, const ProducerCounts& counts) {
  if (impl_->mapping.base() != nullptr) impl_->producers.counts(id, counts);
}
void Writer::producer_error(int id, std::string_view text) {
  if (impl_->mapping.base() != nullptr) impl_->producers.error(id, text);
}
void Writer::producer_detach(int id) {
  if (impl_->mapping.base() != nullptr) impl_->producers.detach(id, impl_->table.now());
}

void Writer::count_reject() {
  bump(impl_->header().counters.rejects);
}

// ---- what it holds ------------------------------------------------------------------------------
WriterStats Writer::stats() const {
  const SegmentHeader& h = impl_->header();
  WriterStats s;
  static_cast<Counters&>(s) = load_counters(h);
  for (std::uint32_t n = 0; n < h.namespace_count; ++n)
    s.namespace_live.push_back(load_relaxed(&h.namespace_live[n]));
  s.capacity = h.capacity;
  s.generation = h.generation;
  s.next_version = impl_->table.area().next_version;
  s.reattached = impl_->reattached;
  s.segment_bytes = impl_->mapping.size();
  s.huge_page_bytes = impl_->huge_page_bytes;
  s.warm_loaded = impl_->warm.loaded;
  s.warm_beyond_capacity = impl_->warm.beyond_capacity;
  s.warm_skipped = impl_->warm.expired + impl_->warm.unknown_namespace + impl_->warm.malformed +
                   impl_->warm.unsynced;
  s.redis_state = redis_state_name(load_relaxed(&h.redis_state));
  s.redis_dirty = load_relaxed(&h.redis_dirty);
  const std::int64_t oldest = load_relaxed(&h.redis_oldest_unsynced_ns);
  s.redis_oldest_unsynced_age_ns =
      oldest > 0 ? std::max<std::int64_t>(0, realtime_ns() - oldest) : 0;
  s.redis_synced_version = load_relaxed(&h.redis_synced_version);
  s.redis_lease_epoch = load_relaxed(&h.redis_lease_epoch);
  s.follow_state = follow_state_name(load_relaxed(&h.follow_state));
  s.follow_lag_ns = load_relaxed(&h.follow_lag_ns);
  s.follow_entries = load_relaxed(&h.follow_entries);
  s.follow_reloads = load_relaxed(&h.follow_reloads);
  s.journal_pending = impl_->journal.pending();
  s.journal_overflows = impl_->journal.overflows();
  return s;
}

const std::vector<NamespaceSpec>& Writer::namespaces() const noexcept {
  return impl_->cfg.namespaces;
}
const std::string& Writer::segment_name() const noexcept {
  return impl_->cfg.segment;
}

std::optional<Position> Writer::find(const KeyRef& key) const {
  return find(key.ns, key.account, key.instrument);
}

std::optional<Position> Writer::find(NamespaceId ns, std::string_view account,
                                     std::string_view instrument) const {
  if (ns >= impl_->cfg.namespaces.size() || !valid_account(account) ||
      !valid_instrument(instrument))
    return std::nullopt;
  const std::uint32_t s =
      impl_->table.find(key_hash(ns, account, instrument), ns, account, instrument);
  if (s == kNil) return std::nullopt;
  Position pos;
  decode(impl_->table.peek(s), kMaxFields, pos);
  return pos;
}

std::vector<std::string> Writer::accounts_holding(NamespaceId ns,
                                                  std::string_view instrument) const {
  std::vector<std::string> out;
  impl_->table.for_each_live([&](std::uint32_t s, NamespaceId of) {
    if (of != ns) return;
    const SlotPayload& p = impl_->table.peek(s);
    if (std::string_view(p.instrument, p.instrument_len) == instrument)
      out.emplace_back(p.account, p.account_len);
  });
  return out;
}

}  // namespace poscache
