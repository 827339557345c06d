// The account index: every position of an account in O(positions of the account), and all of
// them as of one moment (Reader::snapshot). Layout: AccountEntry and the stripes in
// shm/layout.hpp; the lists run through the account links (u32[capacity], links_offset).
//
// WHAT IT IS
// - An open-addressing table of AccountEntry {key = account hash, head slot, count}, linear
//   probing, backward-shift deletion (no tombstones), as many entries as the hash index has
//   buckets (accounts <= positions <= capacity, so it is at most half full).
// - Each account's positions form a list: head, then link[slot] to the next, `count` long. Two
//   accounts whose 64-bit hashes collide share an entry and a list; readers compare the text.
// - Stripes: seqlock words, the account's being stripes[account_hash & (stripes - 1)]. Every
//   change to an account (its slots, its links, its entry's head and count) happens while its
//   stripe is odd, and a change that is one unit for the user (one upsert, erase or removal;
//   a whole Writer::apply batch) holds it odd from its first write to its last.
// - accounts_epoch (header line 3): odd while entries move (an erase shifts later entries of
//   its run back; a re-attach clears and refills the table).
//
// PROTOCOL
//
//   writer                                          reader (snapshot of account A)
//   ---------------------------------------------   ---------------------------------------------
//   first write of a change to A:                   AS1 s1 = load_acquire(stripe(A)); odd → retry
//     AW1 store_relaxed(stripe, s+1)   s is even         e1 = load_acquire(accounts_epoch); odd →
//     AW2 atomic_thread_fence(release)                   retry
//   AW3 slot writes (their own seqlock), list       AS2 probe the entries from A's home: key
//       links, entry head/count: relaxed stores         (relaxed) == A's key → head, count; 0 →
//       (entry inserts: a new key into an empty         absent
//       entry, head and count stored before it)     AS3 walk head → link[slot], at most count
//   end of the change (one op, or end_batch):           slots: copy each payload (relaxed
//     AW4 store_release(stripe, s+2)                    loads), keep those whose account is A
//   an erase (the last position of an account):    AS4 atomic_thread_fence(acquire); s2, e2 =
//     AE1 store_relaxed(epoch, e+1); fence(release)     load_relaxed(stripe), (epoch)
//     AE2 clear, shift back; store_release(e+2)     AS5 s1 == s2, e1 == e2 and the walk ended
//                                                       (kNil) after exactly count slots →
//                                                       consistent; else retry
//
// WHY A SNAPSHOT THAT PASSES AS5 IS ONE MOMENT OF A
// The slot seqlock's argument (shm/seqlock.hpp), with the stripe as the sequence word and
// everything A's changes touch as the guarded words:
// - AS1 pairs with AW4 of the change that left s1: that change's writes (slots, links, entry) are
//   visible to AS2-AS3.
// - If AS2-AS3 read any word stored by a LATER change to A, its AW2 release fence and AS4's acquire
//   fence synchronize through that word: its AW1 (odd) happens before AS4's load, so s2 != s1.
// - So every word read is from the state between two changes to A: a batch that changed
//   several of A's positions is seen wholly or not at all. A change to another account B that
//   shares A's stripe only forces a retry.
// - What A's stripe does not cover is other accounts' entries moving on A's probe path. They
//   move only between AE1 and AE2, and the epoch check is the same argument again. An insert
//   fills an empty entry and moves nothing; a probe that passes it or stops before it is right
//   either way.
// - The slot words copied may belong to a slot A no longer owns only if A's list changed, which
//   needs A's stripe. A slot freed and reused for B after AS1 fails AS5 the same way.
//
// NO FALSE MISS
// A position present throughout the call is in A's list throughout, and A's entry exists
// throughout. A validated snapshot is the state at one moment within the call, so it lists it.
// A snapshot that keeps failing is reported (writer_busy / writer_dead), never shortened.
//
// BOUNDED TIME
// A walk visits at most `count` slots (a longer list is a list mid-change: retry); AS1 spins at
// most kReadSpins times on an odd stripe or epoch; an attempt that fails AS5 is retried at most
// kSnapshotRetries times. Then the reader reports, as get() does.
//
// THE WRITER DIES
// mid-change: A's stripe stays odd, and snapshots of A answer writer_busy, then writer_dead
// once the heartbeat stops. A re-attaching writer makes every stripe and the epoch odd before
// it repairs a slot, rebuilds the lists and the table from the slots, then even again: a reader
// that straddles any of it retries.
//
// COST TO THE WRITER
// One stripe line per change (the upsert pipeline prefetches it with the slot's first line,
// which holds the account hash), two stores and a compiler-only fence on x86.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "shm/atomic.hpp"
#include "shm/hash.hpp"
#include "shm/layout.hpp"

namespace poscache::shm {

inline constexpr unsigned kSnapshotRetries = 64;
inline constexpr std::uint32_t kNoAccount = 0xFFFF'FFFFu;  // find(): absent

// The account's hash (XXH3-64 of the account text alone): its entry key and its stripe.
inline std::uint64_t account_hash(std::string_view account) noexcept {
  return XXH3_64bits(account.data(), account.size());
}
// Hash 0 is stored as 1, so 0 can mean an empty entry.
constexpr std::uint64_t account_key(std::uint64_t account_hash) noexcept {
  return account_hash ? account_hash : 1;
}

// What AS2 found: the list's head and length, or absent.
struct AccountRef {
  std::uint32_t head = kNil;
  std::uint32_t count = 0;
  bool found = false;
};

// AS2. `mask` = entries - 1. Visits at most every entry.
inline AccountRef find_account(const AccountEntry* entries, std::uint64_t mask,
                               std::uint64_t hash) noexcept {
  const std::uint64_t k = account_key(hash);
  std::uint64_t i = k & mask;
  for (std::uint64_t step = 0; step <= mask; ++step, i = (i + 1) & mask) {
    const std::uint64_t key = load_relaxed(&entries[i].key);
    if (key == 0) return {};
    if (key == k) return {load_relaxed(&entries[i].head), load_relaxed(&entries[i].count), true};
  }
  return {};
}

// Writer side: the table, the stripes and the epoch. Only the writer's apply thread calls it;
// its own loads are relaxed, and every store a reader may see is an atomic store.
class AccountIndexWriter {
 public:
  AccountIndexWriter() = default;
  AccountIndexWriter(AccountEntry* entries, std::uint64_t entry_count, std::uint64_t* stripes,
                     std::uint64_t stripe_count, std::uint64_t* epoch)
      : e_(entries),
        mask_(entry_count - 1),
        stripes_(stripes),
        smask_(stripe_count - 1),
        epoch_(epoch) {}

  [[nodiscard]] std::uint64_t* stripe_of(std::uint64_t hash) const noexcept {
    return &stripes_[hash & smask_];
  }
  void prefetch(std::uint64_t hash) const noexcept {
    __builtin_prefetch(&e_[account_key(hash) & mask_]);
    __builtin_prefetch(stripe_of(hash), 1);
  }

  // AW1-AW2: opens the stripe unless it is open already; true if this call opened it.
  static bool open(std::uint64_t* stripe) noexcept {
    const std::uint64_t s = load_relaxed(stripe);
    if (s & 1) return false;
    store_relaxed(stripe, s + 1);                         // AW1
    std::atomic_thread_fence(std::memory_order_release);  // AW2
    return true;
  }
  // AW4.
  static void close(std::uint64_t* stripe) noexcept {
    store_release(stripe, load_relaxed(stripe) + 1);
  }

  [[nodiscard]] AccountRef find(std::uint64_t hash) const noexcept {
    return find_account(e_, mask_, hash);
  }

  // The account's list now starts at `head` and holds `count` positions (count 0 erases it).
  // The caller holds the account's stripe open.
  void set(std::uint64_t hash, std::uint32_t head, std::uint32_t count) noexcept {
    const std::uint64_t k = account_key(hash);
    std::uint64_t i = k & mask_;
    while (true) {
      const std::uint64_t key = e_[i].key;
      if (key == k) break;
      if (key == 0) {
        if (count == 0) return;
        // A new entry: head and count first, then the key (a reader that sees the key reads
        // them under the stripe's protection either way; this keeps a lone entry whole).
        store_relaxed(&e_[i].head, head);
        store_relaxed(&e_[i].count, count);
        store_relaxed(&e_[i].key, k);
        return;
      }
      i = (i + 1) & mask_;
    }
    if (count != 0) {
      store_relaxed(&e_[i].head, head);
      store_relaxed(&e_[i].count, count);
      return;
    }
    erase_at(i);
  }

  // Empties every entry (re-attach), under the epoch.
  void clear() noexcept {
    const bool opened = begin_move();
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      store_relaxed(&e_[i].key, 0);
      store_relaxed(&e_[i].head, kNil);
      store_relaxed(&e_[i].count, 0);
    }
    if (opened) end_move();
  }

  // Re-attach: every stripe odd before the repairs and rebuilds, even after (a stripe a killed
  // writer left odd stays odd until then), and the epoch with them.
  void open_all() noexcept {
    for (std::uint64_t i = 0; i <= smask_; ++i) open(&stripes_[i]);
    begin_move();
  }
  void close_all() noexcept {
    for (std::uint64_t i = 0; i <= smask_; ++i) close(&stripes_[i]);
    end_move();
  }

 private:
  // AE1; false if the epoch is odd already (inside open_all(), or left odd by a killed writer
  // until the re-attach's close_all()).
  bool begin_move() noexcept {
    const std::uint64_t e = load_relaxed(epoch_);
    if (e & 1) return false;
    store_relaxed(epoch_, e + 1);
    std::atomic_thread_fence(std::memory_order_release);
    return true;
  }
  void end_move() noexcept {  // AE2
    store_release(epoch_, load_relaxed(epoch_) + 1);
  }

  // Backward-shift deletion: later entries of the run move into the hole when their home
  // allows it, under the epoch (AE1-AE2) since they belong to other accounts.
  void erase_at(std::uint64_t i) noexcept {
    const bool opened = begin_move();
    for (std::uint64_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      const std::uint64_t key = e_[j].key;
      if (key == 0) break;
      const std::uint64_t home = key & mask_;
      if (((j - home) & mask_) >= ((j - i) & mask_)) {  // i lies cyclically in [home, j)
        store_relaxed(&e_[i].head, e_[j].head);
        store_relaxed(&e_[i].count, e_[j].count);
        store_relaxed(&e_[i].key, key);
        i = j;
      }
    }
    store_relaxed(&e_[i].key, 0);
    store_relaxed(&e_[i].head, kNil);
    store_relaxed(&e_[i].count, 0);
    if (opened) end_move();
  }

  AccountEntry* e_ = nullptr;
  std::uint64_t mask_ = 0;
  std::uint64_t* stripes_ = nullptr;
  std::uint64_t smask_ = 0;
  std::uint64_t* epoch_ = nullptr;
};

}  // namespace poscache::shm
