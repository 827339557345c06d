#include "writer/ingest/trade_window.hpp"

#include <cstring>

#include "poscache/error.hpp"
#include "shm/atomic.hpp"
#include "writer/ingest/state_file.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace poscache::ingest {
namespace {
constexpr std::uint64_t kMagic = 0x31574452'54504350ull;  // "PCPTRDW1"
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
  const std::uint64_t pending = header_->pending_hash;
  if (pending != 0 && head > 0 && ring_[(head - 1) % capacity] == pending) {
    abort();  // killed inside T3, after the ring took the hash: only the clearing was left
  } else if (pending != 0) {  // killed between T1 and T3: did the fill land?
    PositionKey k;
    k.set(header_->pending_ns,
          {header_->pending_account,
           std::min<std::size_t>(header_->pending_account_len, kMaxAccountLen)},
          {header_->pending_instrument,
           std::min<std::size_t>(header_->pending_instrument_len, kMaxInstrumentLen)});
    if (version_of(k) != header_->pending_old_version)
      commit();
    else
      abort();
  }
}

TradeWindow::~TradeWindow() {
  unmap_state_file(file_);
}

void TradeWindow::begin(std::uint64_t h, const PositionKey& key,
                        std::uint64_t old_version) noexcept {
  TradeWindowHeader& w = *header_;
  w.pending_old_version = old_version;
  w.pending_ns = key.ns;
  w.pending_account_len = key.account_len;
  w.pending_instrument_len = key.instrument_len;
  std::memcpy(w.pending_account, key.account, key.account_len);
  std::memcpy(w.pending_instrument, key.instrument, key.instrument_len);
  // Last: a kill before this store leaves no pending entry, a kill after it a complete one.
  shm::store_release(&w.pending_hash, h);
}

void TradeWindow::commit() noexcept {
  TradeWindowHeader& w = *header_;
  const std::uint64_t h = w.pending_hash;
  const std::uint64_t head = w.head;
  if (head >= w.capacity) seen_.erase(ring_[head % w.capacity]);
  ring_[head % w.capacity] = h;
  seen_.insert(h);
  shm::store_release(&w.head, head + 1);
  shm::store_release(&w.pending_hash, std::uint64_t{0});
}

void TradeWindow::abort() noexcept {
  shm::store_release(&header_->pending_hash, std::uint64_t{0});
}

std::uint64_t TradeWindow::recorded() const noexcept {
  return std::min(header_->head, header_->capacity);
}

}  // namespace poscache::ingest
