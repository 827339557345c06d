#include "writer/ingest/trade_window.hpp"

#include <cstring>

#include "poscache/error.hpp"
#include "shm/atomic.hpp"
#include "writer/ingest/state_file.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace poscache::ingest {
namespace {
constexpr std::uint64_t kMagic = 0x32574452'54504350ull;  // "PCPTRDW2": a list of pending fills
}

std::string TradeWindow::path_of(const std::string& segment) {
  return "/dev/shm/" + segment + ".trades";
}

std::uint64_t TradeWindow::hash(NamespaceId ns, std::string_view trade_id) noexcept {
  char buf[2 + kMaxTradeIdLen];
  std::memcpy(buf, &ns, 2);
  const std::size_t n = std::min(trade_id.size(), kMaxTradeIdLen);
  if (n > 0) std::memcpy(buf + 2, trade_id.data(), n);
  const std::uint64_t h = XXH3_64bits(buf, 2 + n);
  return h == 0 ? 1 : h;
}

TradeWindow::TradeWindow(const std::string& segment, std::uint64_t generation,
                         std::uint64_t capacity, const VersionOf& version_of) {
  if (capacity == 0 || capacity > (1ull << 28))
    throw Error("trade window: capacity " + std::to_string(capacity) +
                " must be 1 to 268435456 trade ids");
  file_ =
      map_state_file(path_of(segment), sizeof(TradeWindowHeader) + capacity * sizeof(std::uint64_t),
                     "trade window");
  void* p = file_.base;
  header_ = static_cast<TradeWindowHeader*>(p);
  ring_ = reinterpret_cast<std::uint64_t*>(header_ + 1);

  restored_ = file_.kept && header_->magic == kMagic && header_->generation == generation &&
              header_->capacity == capacity;
  if (!restored_) {
    std::memset(p, 0, sizeof(TradeWindowHeader));
    header_->generation = generation;
    header_->capacity = capacity;
    header_->magic = kMagic;
  }
  seen_.reserve(capacity);
  const std::uint64_t head = header_->head;
  for (std::uint64_t i = head > capacity ? head - capacity : 0; i < head; ++i)
    seen_.insert(ring_[i % capacity]);
  const std::uint64_t n = std::min<std::uint64_t>(header_->pending_count, kMaxPending);
  if (n == 0) return;
  bool in_ring = head >= n;  // killed inside T3 after head moved: the hashes sit below head
  for (std::uint64_t i = 0; in_ring && i < n; ++i)
    in_ring = ring_[(head - n + i) % capacity] == header_->pending[i].hash;
  if (in_ring) {
    abort();
    return;
  }
  // Killed between T1 and T3: record the fills whose positions moved past their old version.
  for (std::uint64_t i = 0; i < n; ++i) {
    const TradePending& e = header_->pending[i];
    PositionKey k;
    k.set(e.ns, {e.account, std::min<std::size_t>(e.account_len, kMaxAccountLen)},
          {e.instrument, std::min<std::size_t>(e.instrument_len, kMaxInstrumentLen)});
    if (version_of(k) != e.old_version) {
      record(e.hash);
      shm::store_release(&header_->head, header_->head + 1);
    }
  }
  abort();
}

TradeWindow::~TradeWindow() {
  unmap_state_file(file_);
}

void TradeWindow::begin(std::uint64_t h, const PositionKey& key,
                        std::uint64_t old_version) noexcept {
  const Fill one{h, &key, old_version};
  begin(std::span(&one, 1));
}

void TradeWindow::begin(std::span<const Fill> fills) noexcept {
  TradeWindowHeader& w = *header_;
  const std::size_t n = std::min(fills.size(), kMaxPending);
  for (std::size_t i = 0; i < n; ++i) {
    TradePending& e = w.pending[i];
    const PositionKey& key = *fills[i].key;
    e.hash = fills[i].hash;
    e.old_version = fills[i].old_version;
    e.ns = key.ns;
    e.account_len = key.account_len;
    e.instrument_len = key.instrument_len;
    std::memcpy(e.account, key.account, key.account_len);
    std::memcpy(e.instrument, key.instrument, key.instrument_len);
  }
  // Last: a kill before this store leaves nothing pending, a kill after it complete entries.
  shm::store_release(&w.pending_count, static_cast<std::uint64_t>(n));
}

void TradeWindow::record(std::uint64_t h) noexcept {
  TradeWindowHeader& w = *header_;
  const std::uint64_t head = w.head;
  if (head >= w.capacity) seen_.erase(ring_[head % w.capacity]);
  ring_[head % w.capacity] = h;
  seen_.insert(h);
}

void TradeWindow::commit() noexcept {
  TradeWindowHeader& w = *header_;
  const std::uint64_t n = std::min<std::uint64_t>(w.pending_count, kMaxPending);
  const std::uint64_t head = w.head;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t h = w.pending[i].hash;
    const std::uint64_t at = head + i;
    if (at >= w.capacity) seen_.erase(ring_[at % w.capacity]);
    ring_[at % w.capacity] = h;
    seen_.insert(h);
  }
  shm::store_release(&w.head, head + n);
  shm::store_release(&w.pending_count, std::uint64_t{0});
}

void TradeWindow::abort() noexcept {
  shm::store_release(&header_->pending_count, std::uint64_t{0});
}

std::uint64_t TradeWindow::recorded() const noexcept {
  return std::min(header_->head, header_->capacity);
}

}  // namespace poscache::ingest
