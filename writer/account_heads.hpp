// The first slot of each account's list, keyed by the account's 64-bit hash: a flat
// open-addressing table in the writer's private memory. Sized once (2x capacity, a power of
// two), so the apply path never allocates; linear probing with backward-shift deletion (no
// tombstones: only the writer thread uses it). Two accounts whose hashes collide share a list;
// invalidate_account() compares the account text, so that is harmless.
#pragma once

#include <cstdint>
#include <vector>

namespace poscache::detail {

class AccountHeads {
 public:
  static constexpr std::uint32_t kNone = 0xFFFF'FFFFu;

  explicit AccountHeads(std::uint64_t capacity) {
    std::uint64_t n = 16;
    while (n < 2 * capacity) n <<= 1;
    keys_.assign(n, 0);
    heads_.assign(n, kNone);
    mask_ = n - 1;
  }

  // Hash 0 is remapped so 0 can mean "empty".
  static std::uint64_t key(std::uint64_t account_hash) noexcept {
    return account_hash ? account_hash : 1;
  }

  void prefetch(std::uint64_t account_hash) const noexcept {
    __builtin_prefetch(&keys_[key(account_hash) & mask_]);
  }

  [[nodiscard]] std::uint32_t find(std::uint64_t account_hash) const noexcept {
    const std::uint64_t k = key(account_hash);
    for (std::uint64_t i = k & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == k) return heads_[i];
      if (keys_[i] == 0) return kNone;
    }
  }

  // Sets the head for the account (inserting it if new).
  void set(std::uint64_t account_hash, std::uint32_t head) noexcept {
    const std::uint64_t k = key(account_hash);
    std::uint64_t i = k & mask_;
    while (keys_[i] != 0 && keys_[i] != k) i = (i + 1) & mask_;
    keys_[i] = k;
    heads_[i] = head;
  }

  void erase(std::uint64_t account_hash) noexcept {
    const std::uint64_t k = key(account_hash);
    std::uint64_t i = k & mask_;
    while (keys_[i] != k) {
      if (keys_[i] == 0) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: pull later entries of the run into the hole when their home allows it.
    for (std::uint64_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (keys_[j] == 0) break;
      const std::uint64_t home = keys_[j] & mask_;
      // j may move to i if i lies cyclically in [home, j)
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        keys_[i] = keys_[j];
        heads_[i] = heads_[j];
        i = j;
      }
    }
    keys_[i] = 0;
    heads_[i] = kNone;
  }

  void clear() noexcept {
    std::fill(keys_.begin(), keys_.end(), 0);
    std::fill(heads_.begin(), heads_.end(), kNone);
  }

 private:
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint32_t> heads_;
  std::uint64_t mask_ = 0;
};

}  // namespace poscache::detail
