// The reader library: a read-only view of a segment. The protocols it relies on are argued in
// shm/seqlock.hpp (slots) and shm/index.hpp (index); this file only composes them.
#include "poscache/reader.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "reader/change_decode.hpp"
#include "reader/reader_state.hpp"
#include "reader/reader_table.hpp"
#include "reader/refresh_channel.hpp"
#include "shm/accounts.hpp"
#include "shm/change_ring.hpp"
#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/seqlock.hpp"
#include "shm/slot_codec.hpp"
#include "shm/values/key_text.hpp"
#include "shm/writer_lock_file.hpp"

namespace poscache {

using namespace shm;
using detail::asking;
using detail::counted;

std::optional<std::size_t> NamespaceInfo::field_index(std::string_view field) const {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].name == field) return i;
  }
  return std::nullopt;
}

namespace {

// The copied words viewed as the payload they are (the library builds without strict aliasing;
// only the words the copy filled are read: the fixed part and `nfields` values).
const SlotPayload& view(const std::uint64_t* words) noexcept {
  return *reinterpret_cast<const SlotPayload*>(words);
}

// Fills `out` from a payload copy of `words` words.
void fill(const std::uint64_t* words, std::size_t nfields, Position& out) noexcept {
  decode(view(words), nfields, out);
}

// Whether the writer's heartbeat is older than the budget: ReaderOptions::writer_silent_after
// (or its variable), else ten of the writer's beats and at least 100 ms.
bool writer_heartbeat_stale(const Reader::State& s, std::int64_t now_ns) noexcept {
  const SegmentHeader& h = *s.header;
  const std::int64_t interval = load_relaxed(&h.heartbeat_interval_ns);
  const std::int64_t limit = s.silent_after_ns > 0
                                 ? s.silent_after_ns
                                 : std::max<std::int64_t>(10 * interval, 100'000'000);
  return now_ns - load_relaxed(&h.heartbeat_ns) > limit;
}

// Whether the silent writer is gone for good. System calls (shm/writer_lock_file.hpp), no
// allocation. The lock speaks first: the kernel drops it when the process ends, before the
// process is even reaped, and a stopped or descheduled writer still holds it. A lock held by
// another process (a successor re-attaching) or one that cannot be asked leaves it to the
// process recorded in the header: gone, or its pid reused (start time), is dead.
bool writer_gone(const Reader::State& s) noexcept {
  const SegmentHeader& h = *s.header;
  const std::int64_t pid = load_relaxed(&h.writer_pid);
  // A Writer of this process holds the lock: it lives, and the lock file must not be opened
  // here (closing it would drop that lock).
  if (this_process_writes(s.name)) return false;
  const LockQuery lock = query_writer_lock(s.lock_path.c_str());
  if (lock.state == LockState::free) return true;
  if (lock.state == LockState::held && (lock.holder == 0 || lock.holder == pid)) return false;
  return writer_process_gone(pid, load_relaxed(&h.writer_start_ticks));
}

// A read stuck mid-write: writer_busy while the heartbeat is within its budget (no system
// call); after, writer_dead only if the writer is confirmed gone, else writer_busy.
ReadStatus stuck_status(const Reader::State& s, std::int64_t now_ns) noexcept {
  if (!writer_heartbeat_stale(s, now_ns)) return ReadStatus::writer_busy;
  return writer_gone(s) ? ReadStatus::writer_dead : ReadStatus::writer_busy;
}

// The heartbeat budget in ns (0: the writer's rule): the option, else the variable.
std::int64_t silent_after_ns(const ReaderOptions& options) {
  if (options.writer_silent_after.count() < 0)
    throw Error("ReaderOptions::writer_silent_after must not be negative");
  if (options.writer_silent_after.count() > 0) return options.writer_silent_after.count();
  const char* env = std::getenv("POSCACHE_READER_SILENT_AFTER_MS");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  errno = 0;
  const long long ms = std::strtoll(env, &end, 10);
  if (*end != '\0' || errno != 0 || ms <= 0 || ms > 86'400'000) {
    throw Error(std::string("POSCACHE_READER_SILENT_AFTER_MS='") + env +
                "' must be a whole number of milliseconds from 1 to 86400000");
  }
  return ms * 1'000'000;
}

std::string state_name(std::uint32_t s) {
  switch (static_cast<SegmentState>(s)) {
    case SegmentState::initializing:
      return "initializing";
    case SegmentState::ready:
      return "ready";
    case SegmentState::closed:
      return "closed";
    case SegmentState::retired:
      return "retired";
  }
  return "unknown(" + std::to_string(s) + ")";
}

// RC1 of the reader table; a Reader that cannot count says why on stderr, once per process.
void claim_record(Reader::State& s) {
  if (!s.options.statistics) {
    s.not_counting = "statistics are off (ReaderOptions)";
    return;
  }
  if (const char* env = std::getenv("POSCACHE_READER_STATS");
      env != nullptr && std::string_view(env) == "off") {
    s.not_counting = "statistics are off (POSCACHE_READER_STATS=off)";
    return;
  }
  s.claim = detail::ReaderClaim::claim(s.name, s.header->generation, s.not_counting);
  s.counts = s.claim.counts();
  static std::atomic<bool> said{false};
  if (s.counts == nullptr && !said.exchange(true)) {
    std::fprintf(stderr, "poscache: reads of segment '%s' are not counted: %s\n", s.name.c_str(),
                 s.not_counting.c_str());
  }
}

std::unique_ptr<Reader::State> make_state(std::string_view name, const ReaderOptions& options) {
  AttachResult a = attach_read_only(name);
  if (a.status != AttachStatus::ok) throw Error(a.message);
  auto s = std::make_unique<Reader::State>();
  s->name = std::string(name);
  s->mapping = std::move(a.mapping);
  const auto* base = static_cast<const std::byte*>(s->mapping.base());
  s->header = reinterpret_cast<const SegmentHeader*>(base);
  const SegmentHeader& h = *s->header;
  s->slots = reinterpret_cast<const Slot*>(base + h.slots_offset);
  s->index[0] = reinterpret_cast<const Bucket*>(base + h.index_offset[0]);
  s->index[1] = reinterpret_cast<const Bucket*>(base + h.index_offset[1]);
  s->capacity = h.capacity;
  s->mask = h.index_buckets - 1;
  // The account index's regions: at offsets geometry_for() gives (the fingerprint check at
  // attach has proven this build and the writer's agree on them).
  const Geometry g = geometry_for(h.capacity);
  s->accounts = reinterpret_cast<const AccountEntry*>(base + g.accounts_offset);
  s->stripes = reinterpret_cast<const std::uint64_t*>(base + g.stripes_offset);
  s->links = reinterpret_cast<const std::uint32_t*>(base + g.links_offset);
  s->stripe_mask = g.account_stripes - 1;
  s->ring = reinterpret_cast<const ChangeCell*>(base + g.ring_offset);
  s->ring_mask = g.ring_cells - 1;
  s->ns_count = h.namespace_count;
  for (std::uint32_t i = 0; i < h.namespace_count; ++i) {
    NamespaceSpec spec = spec_of(h.namespaces[i]);
    NamespaceInfo info;
    info.id = static_cast<NamespaceId>(i);
    info.name = std::move(spec.name);
    info.fields = std::move(spec.fields);
    info.stale_after = spec.stale_after;
    info.expire_after = spec.expire_after;
    s->slot_count[i] = static_cast<std::uint8_t>(value_slots(info.fields));
    s->stale_after_ns[i] = h.namespaces[i].stale_after_ns;
    s->infos.push_back(std::move(info));
  }
  std::size_t widest = 0;
  for (std::uint32_t i = 0; i < h.namespace_count; ++i)
    widest = std::max<std::size_t>(widest, s->slot_count[i]);
  s->max_copy_bytes = 8 + 8 * (kPayloadFixedWords + 2 * widest);
  s->options = options;
  s->silent_after_ns = silent_after_ns(options);
  s->lock_path = writer_lock_path(name);
  claim_record(*s);
  const char* env = std::getenv("POSCACHE_READER_REFRESH");
  if (!options.refresh || (env != nullptr && std::string_view(env) == "off"))
    s->no_refresh = "refresh is off (ReaderOptions, or POSCACHE_READER_REFRESH=off)";
  else
    s->channel = detail::RefreshChannel::open(s->name, h.generation, s->no_refresh);
  s->refresh = s->channel.get();
  return s;
}

// A copy's age at `now` and whether it is stale by its namespace's stale_after; true if stale.
bool set_age(const Reader::State& s, Position& p, std::int64_t now) noexcept {
  p.age_ns = std::max<std::int64_t>(0, now - p.updated_at_ns);
  p.stale = s.stale_after_ns[p.ns] > 0 && p.age_ns > s.stale_after_ns[p.ns];
  return p.stale;
}

}  // namespace

Reader::Reader(std::unique_ptr<State> state) : s_(std::move(state)) {}
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;
Reader::~Reader() = default;

Reader Reader::open(std::string_view segment) {
  return Reader(make_state(segment, ReaderOptions{}));
}

Reader Reader::open(std::string_view segment, const ReaderOptions& options) {
  return Reader(make_state(segment, options));
}

ReadStatus Reader::get(NamespaceId ns, std::string_view account, std::string_view instrument,
                       Position& out) const noexcept {
  return get(ns, account, instrument, out, coarse_realtime_ns());
}

// The read path: index protocol XL1-XL3 (shm/index.hpp) around the slot seqlock (shm/seqlock.hpp)
// in lookup_hashed(), then the refresh policy's ask (the key's hash reused), then the count.
ReadStatus Reader::get(NamespaceId ns, std::string_view account, std::string_view instrument,
                       Position& out, std::int64_t now) const noexcept {
  const State& s = *s_;
  if (ns >= s.ns_count || account.empty() || account.size() > kMaxAccountLen ||
      instrument.empty() || instrument.size() > kMaxInstrumentLen) {
    return counted(s, ns, ReadStatus::bad_key);
  }
  const std::uint64_t hash = key_hash(ns, account, instrument);
  const ReadStatus st = lookup_hashed(ns, account, instrument, hash, out, now);
  return counted(s, ns, asking(s, ns, account, instrument, hash, st, out, now));
}

ReadStatus Reader::get(std::string_view ns, std::string_view account, std::string_view instrument,
                       Position& out) const noexcept {
  const auto id = namespace_id(ns);
  return id ? get(*id, account, instrument, out)
            : counted(*s_, shm::kNoNamespaceRow, ReadStatus::bad_key);
}

bool Reader::counting() const noexcept {
  return s_->counts != nullptr;
}
const std::string& Reader::not_counting_because() const noexcept {
  return s_->not_counting;
}
const detail::RefreshChannel* Reader::channel() const noexcept {
  return s_->refresh;
}
const std::string& Reader::refresh_unavailable_because() const noexcept {
  return s_->no_refresh;
}

ReadStatus Reader::lookup_hashed(NamespaceId ns, std::string_view account,
                                 std::string_view instrument, std::uint64_t hash, Position& out,
                                 std::int64_t now_ns) const noexcept {
  const State& s = *s_;
  const SegmentHeader& h = *s.header;
  if (load_relaxed(&h.state) == static_cast<std::uint32_t>(SegmentState::retired)) {
    return ReadStatus::retired;
  }
  const std::size_t words = kPayloadFixedWords + 2 * s.slot_count[ns];
  std::uint64_t buf[kPayloadWords];
  bool stuck = false;

  for (unsigned attempt = 0; attempt < kIndexRetries; ++attempt) {
    const std::uint64_t epoch = load_acquire(&h.index_epoch);  // XL1, pairs XB2
    const bool hit = probe(s.index[epoch & 1], s.mask, s.capacity, hash, [&](std::uint32_t slot) {
      // The copy spans up to 5 lines of the slot: request them all at once so their misses
      // overlap instead of following one another.
      const auto* line = reinterpret_cast<const char*>(&s.slots[slot]);
      for (std::size_t off = kCacheLine; off < 8 + words * 8; off += kCacheLine)
        __builtin_prefetch(line + off);
      if (!read_bounded(s.slots[slot], buf, words)) {  // mid-write past the bound
        stuck = true;
        return true;  // stop probing: report rather than guess
      }
      return same_key(view(buf), hash, ns, account, instrument);
    });
    if (stuck) {
      return stuck_status(s, now_ns);
    }
    if (hit) {
      fill(buf, s.slot_count[ns], out);
      return set_age(s, out, now_ns) ? ReadStatus::stale : ReadStatus::ok;
    }
    // XL3: a miss counts only if no rebuild was published while we probed.
    if (load_acquire(&h.index_epoch) == epoch) return ReadStatus::not_found;
  }
  return ReadStatus::writer_busy;  // rebuilt kIndexRetries times during one read
}

std::optional<NamespaceId> Reader::namespace_id(std::string_view name) const noexcept {
  for (const auto& info : s_->infos) {
    if (info.name == name) return info.id;
  }
  return std::nullopt;
}

const std::vector<NamespaceInfo>& Reader::namespaces() const noexcept {
  return s_->infos;
}

const NamespaceInfo& Reader::namespace_info(NamespaceId id) const {
  if (id >= s_->infos.size())
    throw Error("namespace id " + std::to_string(id) + " is not in segment '" + s_->name + "'");
  return s_->infos[id];
}

Reader::ScanResult Reader::scan(const ScanFilter& filter,
                                const std::function<void(const Position&)>& visit) const {
  const State& s = *s_;
  ScanResult r;
  const std::int64_t now = realtime_ns();
  std::uint64_t buf[kPayloadWords];
  Position p;
  std::string key;
  for (std::uint64_t i = 0; i < s.capacity; ++i) {
    if (!read_bounded(s.slots[i], buf, kPayloadWords)) {
      ++r.skipped_mid_write;
      continue;
    }
    SlotPayload pl;
    std::memcpy(&pl, buf, sizeof pl);
    if (pl.ns == kFreeNamespace || pl.ns >= s.ns_count) continue;
    if (filter.ns && pl.ns != *filter.ns) continue;
    const std::string_view account(pl.account,
                                   std::min<std::size_t>(pl.account_len, kMaxAccountLen));
    if (filter.account && account != *filter.account) continue;
    fill(buf, s.slot_count[pl.ns], p);
    if (filter.glob) {
      if (!detail::key_matches(filter.glob->c_str(), key, s.infos[pl.ns].name, account,
                               p.instrument_view())) {
        continue;
      }
    }
    set_age(s, p, now);
    ++r.visited;
    visit(p);
  }
  return r;
}

std::vector<Position> Reader::positions_of(std::string_view account) const {
  std::vector<Position> out;
  const ReadStatus st = snapshot(account, out);
  if (st == ReadStatus::writer_busy || st == ReadStatus::writer_dead) {
    out.clear();
    ScanFilter f;
    f.account = std::string(account);
    scan(f, [&](const Position& p) { out.push_back(p); });
  }
  return out;
}

// The snapshot protocol AS1-AS5 (shm/accounts.hpp).
ReadStatus Reader::snapshot(std::string_view account, std::vector<Position>& out) const {
  const State& s = *s_;
  const SegmentHeader& h = *s.header;
  out.clear();
  if (account.empty() || account.size() > kMaxAccountLen) return ReadStatus::bad_key;
  if (load_relaxed(&h.state) == static_cast<std::uint32_t>(SegmentState::retired))
    return ReadStatus::retired;
  const std::uint64_t ah = account_hash(account);
  const std::uint64_t* stripe = &s.stripes[ah & s.stripe_mask];
  const std::int64_t now = coarse_realtime_ns();
  std::uint64_t buf[kPayloadWords];
  unsigned spins = 0;
  for (unsigned attempt = 0; attempt < kSnapshotRetries;) {
    const std::uint64_t s1 = load_acquire(stripe);             // AS1, pairs with AW4
    const std::uint64_t e1 = load_acquire(&h.accounts_epoch);  // pairs with AE2
    if ((s1 | e1) & 1) {  // mid-change: wait a little, then report
      if (++spins >= kReadSpins) break;
      cpu_relax();
      continue;
    }
    out.clear();
    const AccountRef ref = find_account(s.accounts, s.mask, ah);  // AS2
    std::uint32_t slot = ref.found ? ref.head : kNil;
    std::uint32_t walked = 0;
    bool stale = false;
    // AS3: each slot's link is read first, so the next slot's lines are requested while this
    // one is copied (the links are the only dependent misses).
    while (slot != kNil && slot < s.capacity && walked < ref.count) {
      const Slot& sl = s.slots[slot];
      slot = load_relaxed(&s.links[slot]);
      ++walked;
      if (slot < s.capacity) {
        const auto* line = reinterpret_cast<const char*>(&s.slots[slot]);
        for (std::size_t off = 0; off < s.max_copy_bytes; off += kCacheLine)
          __builtin_prefetch(line + off);
      }
      for (std::size_t w = 0; w < kPayloadFixedWords; ++w) buf[w] = load_relaxed(&sl.payload[w]);
      const SlotPayload& pl = view(buf);
      if (pl.ns >= s.ns_count || pl.account_len != account.size() ||
          std::memcmp(pl.account, account.data(), account.size()) != 0) {
        continue;  // another account with the same hash, or a change AS5 will catch
      }
      const std::size_t words = kPayloadFixedWords + 2 * s.slot_count[pl.ns];
      for (std::size_t w = kPayloadFixedWords; w < words; ++w)
        buf[w] = load_relaxed(&sl.payload[w]);
      Position& p = out.emplace_back();
      fill(buf, s.slot_count[pl.ns], p);
      stale = set_age(s, p, now) || stale;
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // AS4, pairs with AW2 / AE1
    if (load_relaxed(stripe) == s1 && load_relaxed(&h.accounts_epoch) == e1 && slot == kNil &&
        walked == ref.count) {  // AS5
      if (out.empty()) return ReadStatus::not_found;
      return stale ? ReadStatus::stale : ReadStatus::ok;
    }
    ++attempt;
  }
  out.clear();
  return stuck_status(s, now);
}

WriterInfo Reader::writer() const {
  const SegmentHeader& h = *s_->header;
  WriterInfo w;
  const std::int64_t now = realtime_ns();
  w.pid = load_relaxed(&h.writer_pid);
  w.started_at_ns = load_relaxed(&h.writer_started_at_ns);
  w.heartbeat_age_ns = now - load_relaxed(&h.heartbeat_ns);
  w.heartbeat_interval_ns = load_relaxed(&h.heartbeat_interval_ns);
  w.restarts = load_relaxed(&h.writer_restarts);
  const bool ready = load_relaxed(&h.state) == static_cast<std::uint32_t>(SegmentState::ready);
  // Off the hot path a system call is fine: kill(pid, 0) confirms the process exists.
  w.alive = ready && w.pid > 0 && !writer_heartbeat_stale(*s_, now) &&
            (::kill(static_cast<pid_t>(w.pid), 0) == 0 || errno == EPERM);
  return w;
}

SegmentStats Reader::stats() const {
  const SegmentHeader& h = *s_->header;
  SegmentStats st;
  st.segment = s_->name;
  st.generation = h.generation;
  st.state = state_name(load_relaxed(&h.state));
  st.capacity = h.capacity;
  st.segment_bytes = h.segment_size;
  st.index_buckets = h.index_buckets;
  st.change_seq = load_acquire(&h.change_seq);
  st.change_position = load_acquire(&h.ring_head);
  st.change_ring_cells = load_relaxed(&h.ring_cells);
  static_cast<Counters&>(st) = load_counters(h);
  for (std::uint32_t n = 0; n < h.namespace_count; ++n)
    st.namespace_live.push_back(load_relaxed(&h.namespace_live[n]));
  st.writer = writer();
  return st;
}

std::uint64_t Reader::generation() const noexcept {
  return s_->header->generation;
}
bool Reader::retired() const noexcept {
  return load_acquire(&s_->header->state) == static_cast<std::uint32_t>(SegmentState::retired);
}
const std::string& Reader::segment_name() const noexcept {
  return s_->name;
}

std::uint64_t Reader::change_sequence() const noexcept {
  return load_acquire(&s_->header->change_seq);  // pairs with the writer's release
}

template <class Moved>
bool Reader::wait_until(Moved moved, std::chrono::nanoseconds timeout) const {
  const SegmentHeader& h = *s_->header;
  const std::int64_t deadline = monotonic_ns() + timeout.count();
  for (;;) {
    // Read the futex word BEFORE re-checking: the writer publishes (the ring's head, then the
    // change sequence), then bumps the futex word, then wakes. If we saw the old value, the futex
    // word we pass is older than the writer's bump, so FUTEX_WAIT returns at once (value
    // differs) or is woken: no lost wake-up.
    const std::uint32_t f = load_acquire(&h.change_futex);
    if (moved()) return true;
    const std::int64_t left = deadline - monotonic_ns();
    if (left <= 0) return false;
    timespec ts{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
    // A shared (not FUTEX_PRIVATE) wait keys on the page, so it works across processes and on a
    // read-only mapping: FUTEX_WAIT only reads the word.
    ::syscall(SYS_futex, &h.change_futex, FUTEX_WAIT, f, &ts, nullptr, 0);
  }
}

bool Reader::wait_for_change(std::uint64_t seen, std::chrono::nanoseconds timeout) const {
  const SegmentHeader& h = *s_->header;
  return wait_until([&] { return load_acquire(&h.change_seq) != seen; }, timeout);
}

bool Reader::wait_for_changes(std::uint64_t from, std::chrono::nanoseconds timeout) const {
  const SegmentHeader& h = *s_->header;
  return wait_until([&] { return load_acquire(&h.ring_head) != from; }, timeout);
}

std::uint64_t Reader::change_position() const noexcept {
  return load_acquire(&s_->header->ring_head);  // CR0
}

std::uint64_t Reader::change_ring_cells() const noexcept {
  return load_relaxed(&s_->header->ring_cells);
}

ChangesResult Reader::changes(std::uint64_t from, std::vector<Change>& out, std::size_t max) const {
  out.clear();
  const SegmentHeader& h = *s_->header;
  const std::uint64_t head = load_acquire(&h.ring_head);  // CR0
  if (load_acquire(&h.state) == static_cast<std::uint32_t>(SegmentState::retired))
    return {ChangeStatus::retired, head};
  if (load_relaxed(&h.ring_cells) == 0) return {ChangeStatus::unavailable, head};
  if (from > head) return {ChangeStatus::invalid_position, head};
  if (head - from > s_->ring_mask + 1) return {ChangeStatus::lapped, head};
  RecordWords r;
  std::uint64_t p = from;
  while (p < head && out.size() < max) {
    std::size_t cells = 0;
    // CR1-CR4. A record that is not whole at its position, or that cannot be decoded (only a
    // corrupt segment has one), is reported as a lap: resync, never a wrong record.
    if (!read_record(s_->ring, s_->ring_mask, p, r, cells) || r.meta().cells != cells ||
        p + cells > head)
      return {ChangeStatus::lapped, load_acquire(&h.ring_head)};
    if (r.meta().kind == kRestartRecord) return {ChangeStatus::writer_restarted, p + cells};
    Change& c = out.emplace_back();
    if (!detail::decode_change(r, s_->ns_count, c)) {
      out.pop_back();
      return {ChangeStatus::lapped, load_acquire(&h.ring_head)};
    }
    c.position = p;
    p += cells;
  }
  return {ChangeStatus::ok, p};
}

FollowResult Reader::follow() {
  const bool retired =
      load_acquire(&s_->header->state) == static_cast<std::uint32_t>(SegmentState::retired);
  AttachResult a = attach_read_only(s_->name);
  if (a.status != AttachStatus::ok) return retired ? FollowResult::unavailable : FollowResult::same;
  const auto* h = static_cast<const SegmentHeader*>(a.mapping.base());
  // The retired segment itself, still under the name (its successor is removing it and creating
  // the new one): not "same", which would leave the caller reading a retired segment for good.
  if (h->generation == s_->header->generation)
    return retired ? FollowResult::unavailable : FollowResult::same;
  try {
    s_ = make_state(s_->name, s_->options);  // the old record is released with the old state
  } catch (const Error&) {
    return FollowResult::unavailable;
  }
  return FollowResult::reattached;
}

const void* Reader::mapping_base() const noexcept {
  return s_->mapping.base();
}
std::size_t Reader::mapping_size() const noexcept {
  return s_->mapping.size();
}
std::uint64_t Reader::huge_page_bytes() const {
  return huge_mapped_bytes(s_->mapping.base(), s_->mapping.size());
}

}  // namespace poscache
