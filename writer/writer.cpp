// The writer: a facade that wires its components together. Each has one job and a file of its
// own:
//   writer/input.hpp       the input rules: yes/no on the hot path, the message on the slow one
//   writer/table.hpp       the apply engine: slot writes (undo, seqlock), index, lists, removals
//   writer/journal.hpp     the removal journal: codec, append, validation, replay
//   writer/lifecycle.hpp   open: create, re-attach (repairs, rebuilds), replace, retire
//   writer/redis/          the Redis mirror: hand-off, sync thread, format, client, warm start
//   writer/follow/         a follower: the segment kept from another writer's Redis
//   writer/writer_redis.cpp the facade's Redis side: the mirror's start, warm start, following,
//                          a standby's promotion (Writer::Impl: writer/writer_impl.hpp)
//   writer/writer_lock.hpp one writer per segment
#include "poscache/writer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/slot_codec.hpp"
#include "writer/input.hpp"
#include "writer/journal.hpp"
#include "writer/lifecycle.hpp"
#include "writer/producer_table.hpp"
#include "writer/reader_table.hpp"
#include "writer/recency_log.hpp"
#include "writer/table.hpp"
#include "writer/table_detail.hpp"
#include "writer/writer_impl.hpp"
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

// The files beside a segment (docs/operations.md, "The files in /dev/shm"), the lock excepted.
constexpr const char* kSideFiles[] = {".readers",  ".trades",  ".streams", ".sock",
                                      ".requests", ".refresh", ".wake"};

std::vector<std::string> Writer::remove_segment(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos)
    throw Error("segment name '" + name + "' must be a non-empty name without '/'");
  const std::string base = shm_path(name);
  struct stat st {};
  std::vector<std::string> removed;
  if (::stat((base + ".lock").c_str(), &st) != 0 && ::stat(base.c_str(), &st) != 0) {
    // Nothing of it but perhaps stray side files: no lock to take, nobody writes it.
  } else {
    detail::WriterLock lock = detail::WriterLock::acquire(name, 0600);  // throws: a writer lives
    if (::unlink(base.c_str()) == 0) removed.push_back(base);
    for (const char* suffix : kSideFiles) {
      const std::string path = base + suffix;
      if (::unlink(path.c_str()) == 0) removed.push_back(path);
    }
    if (::unlink((base + ".lock").c_str()) == 0) removed.push_back(base + ".lock");
    return removed;  // the lock is released here, its file already gone
  }
  for (const char* suffix : kSideFiles) {
    const std::string path = base + suffix;
    if (::unlink(path.c_str()) == 0) removed.push_back(path);
  }
  return removed;
}

std::unique_ptr<Writer> Writer::open(const WriterConfig& config) {
  check_config(config);
  auto impl = std::make_unique<Impl>(config);
  WriterConfig& cfg = impl->cfg;
  if (cfg.standby) cfg.follow = true;
  if (!cfg.log) {
    cfg.log = [](LogLevel level, std::string_view text) {
      static constexpr const char* kName[] = {"debug", "info", "warn", "error"};
      // Its own name: the library embedded in a process that is not poscache-writer.
      std::cerr << "poscache (writer library) [" << kName[static_cast<int>(level)] << "] " << text
                << '\n';
    };
  }
  impl->lock = detail::WriterLock::acquire(cfg.segment, cfg.mode);
  try {
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
  } catch (...) {
    // A writer that fails to start (no room in /dev/shm, a segment it may not open, Redis
    // refusing its warm start) takes down what it started, then lets go of the lock, and removes
    // the lock file if it created it (an operator would otherwise find a writer's file and no
    // writer). The lock goes last: no successor starts while this one still runs threads.
    detail::WriterLock lock = std::move(impl->lock);
    impl.reset();
    lock.discard();
    throw;
  }
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
[[noreturn]] void Writer::Impl::refuse_in_follower() const {
  throw Error("segment '" + cfg.segment +
              "' is kept by a follower (WriterConfig::follow, poscache-writer --follow): its "
              "positions change only through the writer that holds the Redis lease");
}

ApplyResult Writer::upsert(const Update& update) {
  detail::Table& table = impl_->table_for_change();
  if (!impl_->rules.check(update).ok()) {  // (the result carries no message: none is built)
    bump(impl_->header().counters.rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return table.upsert(update);
}

void Writer::upsert_batch(std::span<const Update> updates, std::span<ApplyResult> results) {
  detail::Table& table = impl_->table_for_change();
  if (results.size() < updates.size())
    throw Error("upsert_batch: results span is shorter than updates");
  // Validate each first (as upsert() does); bad ones are reported, the rest applied in order.
  std::size_t start = 0;
  for (std::size_t i = 0; i <= updates.size(); ++i) {
    const bool bad = i < updates.size() && !impl_->rules.check(updates[i]).ok();
    if (i == updates.size() || bad) {
      table.upsert_batch(updates.subspan(start, i - start), results.data() + start);
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
  detail::Table& table = impl_->table_for_change();
  if (results.size() < updates.size() || key_hashes.size() < updates.size())
    throw Error("upsert_batch: results or key_hashes span is shorter than updates");
  std::size_t start = 0;
  for (std::size_t i = 0; i <= updates.size(); ++i) {
    const bool bad = i < updates.size() && !impl_->rules.check_shape(updates[i]).ok();
    if (i == updates.size() || bad) {
      if (i - start < 4) {  // too few to pipeline: the pipeline's fill and drain cost more
        for (std::size_t k = start; k < i; ++k)
          results[k] = table.upsert_claimed(updates[k], key_hashes[k]);
      } else {
        table.upsert_batch(updates.subspan(start, i - start), results.data() + start,
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
  detail::Table& table = impl_->table_for_change();
  if (!impl_->rules.problem(key).empty()) {
    bump(impl_->header().counters.rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return table.erase(key);
}

std::size_t Writer::invalidate_account(std::string_view account, std::optional<NamespaceId> ns) {
  detail::Table& table = impl_->table_for_change();
  return table.invalidate_account(account, ns);
}
std::size_t Writer::invalidate_namespace(NamespaceId ns) {
  detail::Table& table = impl_->table_for_change();
  if (!impl_->rules.problem_of_namespace(ns).empty()) return 0;
  return table.invalidate_namespace(ns);
}
std::size_t Writer::invalidate_matching(std::string_view glob) {
  detail::Table& table = impl_->table_for_change();
  if (std::string why = impl_->rules.problem_of_glob(glob); !why.empty()) throw Error(why);
  return table.invalidate_matching(glob);
}
std::size_t Writer::invalidate_all() {
  detail::Table& table = impl_->table_for_change();
  return table.invalidate_all();
}

BatchResult Writer::apply(std::span<const Op> ops) {
  detail::Table& t = impl_->table_for_change();
  BatchResult br;
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
  if (t >= w.next_reap) {  // readers that left or died: about once a second (RC4)
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
std::uint64_t Writer::next_version() const noexcept {
  return impl_->table.next_version();
}

WriterStats Writer::stats() const {
  const SegmentHeader& h = impl_->header();
  WriterStats s;
  static_cast<Counters&>(s) = load_counters(h);
  for (std::uint32_t n = 0; n < h.namespace_count; ++n)
    s.namespace_live.push_back(load_relaxed(&h.namespace_live[n]));
  s.capacity = h.capacity;
  s.generation = h.generation;
  s.next_version = impl_->table.next_version();
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
  s.index_rebuild_slices = impl_->table.rebuild_slices();
  s.index_step_longest_ns = impl_->table.longest_index_step_ns();
  for (std::size_t b = 0; b < s.index_step_counts.size(); ++b)
    s.index_step_counts[b] = impl_->table.index_steps_within(b);
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
