#include "writer/producer_table.hpp"

#include "shm/seqlock.hpp"

namespace poscache::detail {

using shm::ProducerState;
using shm::ProducerStatus;

void ProducerTable::orphan_all(std::int64_t now) noexcept {
  for (std::size_t i = 0; i < shm::kMaxProducers; ++i)
    if (shm::load_relaxed(&e_[i].state) == static_cast<std::uint32_t>(ProducerState::attached))
      detach(static_cast<int>(i), now);
}

int ProducerTable::attach(std::string_view name, std::int64_t pid, std::uint32_t uid,
                          std::int64_t now) noexcept {
  // A free entry, else the detached one that left first.
  int pick = -1;
  std::int64_t oldest = INT64_MAX;
  for (std::size_t i = 0; i < shm::kMaxProducers; ++i) {
    const auto st = static_cast<ProducerState>(shm::load_relaxed(&e_[i].state));
    if (st == ProducerState::free) {
      pick = static_cast<int>(i);
      break;
    }
    if (st == ProducerState::detached && shm::load_relaxed(&e_[i].detached_at_ns) < oldest) {
      oldest = shm::load_relaxed(&e_[i].detached_at_ns);
      pick = static_cast<int>(i);
    }
  }
  if (pick < 0) return -1;
  ProducerStatus& p = e_[pick];
  const std::uint64_t s = shm::seqlock_begin(&p.seq);
  shm::store_relaxed(&p.state, static_cast<std::uint32_t>(ProducerState::attached));
  shm::store_relaxed(&p.uid, uid);
  shm::store_relaxed(&p.pid, pid);
  shm::store_relaxed(&p.attached_at_ns, now);
  shm::store_relaxed(&p.detached_at_ns, std::int64_t{0});
  shm::put_text(p.name, name);
  for (std::uint64_t* w : {&p.pushed, &p.applied, &p.rejected, &p.full, &p.synced, &p.error_len})
    shm::store_relaxed(w, std::uint64_t{0});
  shm::put_text(p.error, {});
  shm::seqlock_publish(&p.seq, s);
  return pick;
}

void ProducerTable::counts(int id, const ProducerCounts& c) noexcept {
  if (id < 0 || static_cast<std::size_t>(id) >= shm::kMaxProducers) return;
  ProducerStatus& p = e_[id];  // relaxed statistics: outside the seqlock
  shm::store_relaxed(&p.pushed, c.pushed);
  shm::store_relaxed(&p.applied, c.applied);
  shm::store_relaxed(&p.rejected, c.rejected);
  shm::store_relaxed(&p.full, c.full);
  shm::store_relaxed(&p.synced, c.synced);
}

void ProducerTable::error(int id, std::string_view text) noexcept {
  if (id < 0 || static_cast<std::size_t>(id) >= shm::kMaxProducers) return;
  ProducerStatus& p = e_[id];
  const std::uint64_t s = shm::seqlock_begin(&p.seq);
  const std::size_t n = std::min(text.size(), sizeof p.error);
  shm::store_relaxed(&p.error_len, static_cast<std::uint64_t>(n));
  shm::put_text(p.error, text.substr(0, n));
  shm::seqlock_publish(&p.seq, s);
}

void ProducerTable::detach(int id, std::int64_t now) noexcept {
  if (id < 0 || static_cast<std::size_t>(id) >= shm::kMaxProducers) return;
  ProducerStatus& p = e_[id];
  const std::uint64_t s = shm::seqlock_begin(&p.seq);
  shm::store_relaxed(&p.state, static_cast<std::uint32_t>(ProducerState::detached));
  shm::store_relaxed(&p.detached_at_ns, now);
  shm::seqlock_publish(&p.seq, s);
}

}  // namespace poscache::detail
