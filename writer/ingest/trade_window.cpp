#include "writer/ingest/trade_window.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "poscache/error.hpp"
#include "shm/atomic.hpp"
#include "shm/hash.hpp"
#include "writer/ingest/state_file.hpp"

namespace poscache::ingest {
namespace {
// "PCPTRDW4": entries of 32 bytes with version and key, and the Redis sync's words (mirrored,
// reserved). Another file (W2: 8-byte hashes of (ns, id); W3: no `reserved`) is started anew:
// its layout cannot be read as this one (docs/exactly-once.md, upgrades).
constexpr std::uint64_t kMagic = 0x34574452'54504350ull;

detail::TradeLogEntry entry_of(const TradePending& p, std::uint64_t version) noexcept {
  return {p.id_hash, version, p.key_hash, p.ns, 0};
}
}  // namespace

std::string TradeWindow::path_of(const std::string& segment) {
  return "/dev/shm/" + segment + ".trades";
}

TradeWindow::Id TradeWindow::id(NamespaceId ns, std::string_view trade_id) noexcept {
  const std::uint64_t h = detail::trade_id_hash(trade_id.substr(0, kMaxTradeIdLen));
  return {h, detail::trade_window_hash(ns, h)};
}

TradeWindow::TradeWindow(const std::string& segment, std::uint64_t generation,
                         std::uint64_t capacity, const VersionOf& version_of) {
  if (capacity == 0 || capacity > (1ull << 28))
    throw Error("trade window: capacity " + std::to_string(capacity) +
                " must be 1 to 268435456 trade ids");
  file_ = map_state_file(path_of(segment),
                         sizeof(TradeWindowHeader) + capacity * sizeof(detail::TradeLogEntry),
                         "trade window");
  void* p = file_.base;
  header_ = static_cast<TradeWindowHeader*>(p);
  ring_ = reinterpret_cast<detail::TradeLogEntry*>(header_ + 1);

  restored_ = file_.kept && header_->magic == kMagic && header_->generation == generation &&
              header_->capacity == capacity;
  if (!restored_) {
    // Every page written now (a new file is holes): a fill that first touched one paid a page
    // fault, about 10 us, every 128th fill (bench_trades: p99 13 us against 1.4 us).
    std::memset(p, 0, sizeof(TradeWindowHeader) + capacity * sizeof(detail::TradeLogEntry));
    header_->generation = generation;
    header_->capacity = capacity;
    header_->magic = kMagic;
  }
  seen_ = HashSet64(capacity);
  const std::uint64_t head = header_->head;
  for (std::uint64_t i = head > capacity ? head - capacity : 0; i < head; ++i) {
    const detail::TradeLogEntry& e = ring_[i % capacity];
    seen_.insert(detail::trade_window_hash(e.ns, e.id_hash));
  }
  const std::uint64_t n = std::min<std::uint64_t>(header_->pending_count, kMaxPending);
  if (n == 0) return;
  bool in_ring = head >= n;  // killed inside TW3 after head moved: the entries sit below head
  for (std::uint64_t i = 0; in_ring && i < n; ++i) {
    const detail::TradeLogEntry& e = ring_[(head - n + i) % capacity];
    in_ring = e.id_hash == header_->pending[i].id_hash && e.ns == header_->pending[i].ns;
  }
  if (in_ring) {
    abort();
    return;
  }
  // Killed between TW1 and TW3: record the fills whose positions moved past their old version.
  std::uint64_t recorded = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const TradePending& e = header_->pending[i];
    PositionKey k;
    k.set(e.ns, {e.account, std::min<std::size_t>(e.account_len, kMaxAccountLen)},
          {e.instrument, std::min<std::size_t>(e.instrument_len, kMaxInstrumentLen)});
    const std::uint64_t now = version_of(k);
    if (now != e.old_version) record(recorded++, entry_of(e, now));
  }
  shm::store_release(&header_->head, head + recorded);
  abort();
}

TradeWindow::~TradeWindow() {
  unmap_state_file(file_);
}

void TradeWindow::begin(const Id& id, const PositionKey& key, std::uint64_t old_version) noexcept {
  const Fill one{id, &key, old_version};
  begin(std::span(&one, 1));
}

void TradeWindow::begin(std::span<const Fill> fills) noexcept {
  TradeWindowHeader& w = *header_;
  const std::size_t n = std::min(fills.size(), kMaxPending);
  for (std::size_t i = 0; i < n; ++i) {
    TradePending& e = w.pending[i];
    const PositionKey& key = *fills[i].key;
    e.id_hash = fills[i].id.id_hash;
    e.old_version = fills[i].old_version;
    e.key_hash = shm::key_hash(key.ns, key.account_view(), key.instrument_view());
    e.ns = key.ns;
    e.account_len = key.account_len;
    e.instrument_len = key.instrument_len;
    std::memcpy(e.account, key.account, key.account_len);
    std::memcpy(e.instrument, key.instrument, key.instrument_len);
  }
  // Last: a kill before this store leaves nothing pending, a kill after it complete entries.
  // release: the Redis sync's TS2 (writer/trade_log.hpp) orders it before the content write.
  shm::store_release(&w.pending_count, static_cast<std::uint64_t>(n));
}

// Relaxed word stores: the sync thread copies entries while later ones are written (it checks
// head after its copy, writer/trade_log.hpp).
void TradeWindow::record(std::uint64_t i, const detail::TradeLogEntry& e) noexcept {
  TradeWindowHeader& w = *header_;
  const std::uint64_t at = w.head + i;
  detail::TradeLogEntry& slot = ring_[at % w.capacity];
  if (at >= w.capacity) seen_.erase(detail::trade_window_hash(slot.ns, slot.id_hash));
  // release: a copy that reads these stores also sees `reserved` past them
  shm::store_relaxed(&w.reserved, at + 1);
  std::atomic_thread_fence(std::memory_order_release);
  shm::store_relaxed(&slot.id_hash, e.id_hash);
  shm::store_relaxed(&slot.version, e.version);
  shm::store_relaxed(&slot.key_hash, e.key_hash);
  shm::store_relaxed(&slot.ns, e.ns);
  seen_.insert(detail::trade_window_hash(e.ns, e.id_hash));
}

void TradeWindow::commit(std::span<const std::uint64_t> versions) noexcept {
  TradeWindowHeader& w = *header_;
  const std::uint64_t n = std::min<std::uint64_t>(w.pending_count, kMaxPending);
  for (std::uint64_t i = 0; i < n; ++i)
    record(i, entry_of(w.pending[i], i < versions.size() ? versions[i] : 0));
  shm::store_release(&w.head, w.head + n);  // TW3: the entries, then head, then no pending
  shm::store_release(&w.pending_count, std::uint64_t{0});
}

void TradeWindow::abort() noexcept {
  shm::store_release(&header_->pending_count, std::uint64_t{0});
}

std::size_t TradeWindow::load(std::vector<Known> ids) {
  std::sort(ids.begin(), ids.end(),
            [](const Known& a, const Known& b) { return a.version < b.version; });
  const std::uint64_t cap = header_->capacity;
  const std::size_t from = ids.size() > cap ? ids.size() - cap : 0;
  // Everything the window held is in Redis (mirrored == head): so are the ids loaded from it.
  const bool all_mirrored = shm::load_relaxed(&header_->mirrored) == header_->head;
  std::size_t added = 0;
  for (std::size_t i = from; i < ids.size(); ++i) {
    const Known& k = ids[i];
    if (seen_.contains(detail::trade_window_hash(k.ns, k.id_hash))) continue;
    record(0, {k.id_hash, k.version, 0, k.ns, 0});
    shm::store_release(&header_->head, header_->head + 1);
    ++added;
  }
  // ...so the sync does not read them again: it would copy a whole window of them, and a fill
  // recorded meanwhile would make the oldest look overwritten before it reached Redis (a false
  // "lost" seen in 10 % of runs of TradeMirrorTest.AFullWindowLoadedFromRedisIsNotTakenForLostIds).
  // Before attach (Writer::mirror_trades), whose release the sync thread acquires.
  if (all_mirrored) shm::store_relaxed(&header_->mirrored, header_->head);
  return added;
}

detail::TradeLog TradeWindow::log() const noexcept {
  return {&header_->head,    &header_->pending_count, ring_,
          header_->capacity, &header_->reserved,      &header_->mirrored};
}

std::uint64_t TradeWindow::recorded() const noexcept {
  return std::min(header_->head, header_->capacity);
}

}  // namespace poscache::ingest
