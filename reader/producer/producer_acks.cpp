// The producer's acknowledgements: waiting until the writer applied a message or Redis holds it,
// what the writer did with it (shm/ring.hpp, OUTCOMES), and the ring's counters.
#include <linux/futex.h>
#include <sys/syscall.h>

#include <atomic>
#include <climits>

#include "reader/producer/producer_impl.hpp"

namespace poscache {

using detail::futex_wait;
using shm::RingHeader;
using shm::RingMessage;

// ---- acknowledgements -------------------------------------------------------------------------
namespace {
// Waits until *word >= seq. The fence pairs with the writer's (writer/ingest/ring_source.cpp):
// waiters is stored, then the target re-read, so a writer that moved it after our first look
// either is seen here or sees `waiters` and wakes us.
WaitStatus wait_for(RingHeader* h, const std::uint64_t* word, std::uint64_t seq,
                    std::chrono::nanoseconds timeout) {
  if (shm::load_acquire(word) >= seq) return WaitStatus::done;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (unsigned spin = 0; spin < 2000; ++spin) {  // applies take microseconds: spin a little
    if (shm::load_acquire(word) >= seq) return WaitStatus::done;
    shm::cpu_relax();
  }
  for (;;) {
    shm::store_relaxed(&h->waiters, 1u);
    const std::uint32_t v = shm::load_acquire(&h->ack_futex);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // `dropped` before the word: the writer stored its true head, then `dropped` (release).
    const bool dropped = shm::load_acquire(&h->dropped) != 0;
    if (shm::load_acquire(word) >= seq) return WaitStatus::done;
    if (dropped) return WaitStatus::dropped;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return WaitStatus::timeout;
    futex_wait(&h->ack_futex, v,
               std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(10)));
  }
}
}  // namespace

WaitStatus Producer::wait_applied(std::uint64_t seq, std::chrono::nanoseconds timeout) const {
  return wait_for(impl_->h, &impl_->h->head, seq, timeout);
}

WaitStatus Producer::wait_synced(std::uint64_t seq, std::chrono::nanoseconds timeout) const {
  if (shm::load_relaxed(&impl_->h->redis) == 0) return WaitStatus::no_redis;
  return wait_for(impl_->h, &impl_->h->synced, seq, timeout);
}

std::string_view to_string(Outcome o) noexcept {
  switch (o) {
    case Outcome::pending:
      return "pending";
    case Outcome::applied:
      return "applied";
    case Outcome::duplicate:
      return "duplicate";
    case Outcome::stale:
      return "stale";
    case Outcome::not_found:
      return "not_found";
    case Outcome::rejected:
      return "rejected";
    case Outcome::unknown:
      return "unknown";
  }
  return "?";
}

Outcome Producer::outcome(std::uint64_t seq, std::string* why) const {
  const Impl& p = *impl_;
  if (seq == 0 || seq > p.tail) return Outcome::unknown;             // never pushed
  if (p.tail - seq >= p.mask + 1) return Outcome::unknown;           // its slot was reused
  if (shm::load_acquire(&p.h->head) < seq) return Outcome::pending;  // PP4 pairs with PC4
  const std::uint64_t word = shm::load_relaxed(&p.outcomes[(seq - 1) & p.mask]);
  if (word >> 8 != seq) return Outcome::unknown;  // never stored for this message
  switch (static_cast<shm::RingOutcome>(word & 0xff)) {
    case shm::RingOutcome::applied:
      return Outcome::applied;
    case shm::RingOutcome::duplicate:
      return Outcome::duplicate;
    case shm::RingOutcome::stale:
      return Outcome::stale;
    case shm::RingOutcome::not_found:
      return Outcome::not_found;
    case shm::RingOutcome::rejected:
      if (why != nullptr) {
        const char* reason = shm::refusal_text(p.msgs[(seq - 1) & p.mask]);
        why->assign(reason, ::strnlen(reason, shm::kRingRefusalLen));
      }
      return Outcome::rejected;
    case shm::RingOutcome::pending:
      break;
  }
  return Outcome::unknown;
}

std::uint64_t Producer::applied() const noexcept {
  return shm::load_acquire(&impl_->h->head);
}

ProducerStats Producer::stats() const {
  const RingHeader* h = impl_->h;
  ProducerStats s;
  s.pushed = impl_->tail;
  s.applied = shm::load_acquire(&h->head);
  s.synced = shm::load_acquire(&h->synced);
  s.rejected = shm::load_relaxed(&h->rejected);
  s.full = shm::load_relaxed(&h->full_count);
  s.attached = shm::load_relaxed(&h->attached) != 0;
  s.redis = shm::load_relaxed(&h->redis) != 0;
  s.reconnects = impl_->reconnects.load(std::memory_order_relaxed);
  s.dropped = shm::load_acquire(&h->dropped) != 0;
  s.last_error = impl_->ring_error();
  return s;
}

}  // namespace poscache
