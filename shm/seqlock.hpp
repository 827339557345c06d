// The slot seqlock: how one writer changes a slot while readers copy it without locks.
//
// PROTOCOL (Slot in shm/layout.hpp: `seq`, then 55 payload words)
//
//   writer (begin_write / store_word / publish)     reader (try_read)
//   ------------------------------------------      ------------------------------------------
//   SW1 store_relaxed(seq, s+1)      s is even      SR1 s1 = load_acquire(seq); odd → retry
//   SW2 atomic_thread_fence(release)                SR2 copy words: load_relaxed each
//   SW3 store_relaxed each changed payload word     SR3 atomic_thread_fence(acquire)
//   SW4 store_release(seq, s+2)                     SR4 s2 = load_relaxed(seq)
//                                                   SR5 s1 == s2 → the copy is consistent
//
// WHY A COPY THAT PASSES SR5 IS NOT TORN
// - SR1 pairs with SW4 of the write that produced s1: everything that write stored (SW3) happens
//   before the reader's copy, so SR2 reads values at least that new.
// - If SR2 read any word from a LATER write (its SW3), then that write's SW2 release fence and the
//   reader's SR3 acquire fence synchronize through that word, so its SW1 (seq = odd) happens
//   before SR4: SR4 reads that odd value or something later, s2 != s1, and the copy is discarded.
// - So a copy passes SR5 only if every word came from the one write that published s1.
// - The payload is only ever touched as 64-bit words via shm/atomic.hpp, on both sides: no data
//   race in the C++ model, and no reliance on x86 ordering (memcpy plus a compiler fence would
//   be both a data race and wrong on weaker hardware).
//
// BOUNDED TIME
// A reader never waits for a lock: SR1 odd or SR5 failing is retried at most kReadSpins times
// (with a pause instruction), then the reader reports instead of spinning on: the caller turns
// that into ReadStatus::writer_busy or, if the heartbeat in the header has stopped,
// ReadStatus::writer_dead. The writer never looks at readers, so it never waits either.
//
// THE WRITER DIES (kill -9) AT EACH STEP
// Before SW1 the writer saves, in WriterArea::undo, the seq and the old value of every payload
// word it is about to change (plain stores; then undo.slot_plus_one stored with release, with
// compiler fences around it: the record is complete before it is armed, and armed before SW1).
//   dies before SW1      slot untouched and even; undo may be armed for it: re-attach sees an
//                       even seq and simply disarms the record.
//   dies after SW1..SW3   slot odd, payload partly new. Readers of it: writer_busy until the
//                       heartbeat goes stale, then writer_dead — bounded, typed, never torn.
//                       Re-attach finds the odd seq, puts the saved words back (the others the
//                       cut write never touched) and publishes the slot as seq s+2 (even, and
//                       different from s, so a reader that copied at s and straddles the repair
//                       still retries). An odd slot without a matching undo record cannot happen;
//                       if a corrupt segment has one, re-attach frees the slot and counts a repair.
//   dies after SW4       the write is complete; the armed undo record refers to an even slot
//                       and is ignored.
#pragma once

#include <atomic>  // atomic_thread_fence
#include <cstddef>
#include <cstdint>

#include "shm/atomic.hpp"
#include "shm/cpu_relax.hpp"
#include "shm/layout.hpp"

namespace poscache::shm {

// How often a reader retries a slot that is mid-write or changed under it before reporting.
// A write holds a slot odd for ~20-50 ns; 1024 pause iterations is tens of microseconds, so a
// live writer almost never hits the bound unless the OS preempted it mid-write.
inline constexpr unsigned kReadSpins = 1024;

// The protocol over any sequence word and the words it guards: the slots use it through the
// Slot functions below, and the header's Redis error text (redis_error_seq, redis_error) directly.

// One attempt (SR1-SR5): copies `n` guarded words into `out`. True if the copy is consistent.
inline bool seqlock_try_read(const std::uint64_t* seq, const std::uint64_t* words,
                             std::uint64_t* out, std::size_t n) noexcept {
  const std::uint64_t s1 = load_acquire(seq);  // SR1 pairs with SW4
  if (s1 & 1) return false;
  for (std::size_t i = 0; i < n; ++i) out[i] = load_relaxed(&words[i]);  // SR2
  std::atomic_thread_fence(std::memory_order_acquire);  // SR3 pairs with SW2 via any word read
  const std::uint64_t s2 = load_relaxed(seq);           // SR4 ordered by SR3
  return s1 == s2;                                      // SR5
}

// Retries up to kReadSpins times. False: the words stayed mid-write (report, don't wait).
inline bool seqlock_read_bounded(const std::uint64_t* seq, const std::uint64_t* words,
                                 std::uint64_t* out, std::size_t n) noexcept {
  for (unsigned i = 0; i < kReadSpins; ++i) {
    if (seqlock_try_read(seq, words, out, n)) return true;
    cpu_relax();
  }
  return false;
}

// Writer side. Only the single writer of the sequence calls these; its own loads are relaxed.
inline std::uint64_t seqlock_begin(std::uint64_t* seq) noexcept {
  const std::uint64_t s = load_relaxed(seq);
  store_relaxed(seq, s + 1);                            // SW1
  std::atomic_thread_fence(std::memory_order_release);  // SW2
  return s;
}
inline void seqlock_publish(std::uint64_t* seq, std::uint64_t s) noexcept {
  store_release(seq, s + 2);  // SW4
}

// ---- slots ------------------------------------------------------------------------------------
inline bool try_read(const Slot& slot, std::uint64_t* out, std::size_t words) noexcept {
  return seqlock_try_read(&slot.seq, slot.payload, out, words);
}
inline bool read_bounded(const Slot& slot, std::uint64_t* out, std::size_t words) noexcept {
  return seqlock_read_bounded(&slot.seq, slot.payload, out, words);
}
inline std::uint64_t begin_write(Slot& slot) noexcept {
  return seqlock_begin(&slot.seq);  // SW1, SW2
}
inline void store_word(Slot& slot, std::size_t i, std::uint64_t value) noexcept {
  store_relaxed(&slot.payload[i], value);  // SW3
}
inline void publish(Slot& slot, std::uint64_t s) noexcept {
  seqlock_publish(&slot.seq, s);  // SW4
}

}  // namespace poscache::shm
