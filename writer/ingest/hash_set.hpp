// A set of non-zero 64-bit hashes in one flat array (open addressing, linear probing, at most
// half full): the trade-id window's lookup. Allocated and zeroed whole at construction, so no
// insert allocates or takes a page fault (std::unordered_set did both: a node per insert and
// 8 MiB of buckets touched at random, 13 us at p99 of a fill in bench_trades). Erase shifts the
// entries after the hole back (no tombstones: the probe sequences stay short however long the
// window churns). Keys are hashes already: the low bits pick the home slot.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace poscache::ingest {

class HashSet64 {
 public:
  explicit HashSet64(std::uint64_t max_keys)
      : slots_(std::bit_ceil(2 * (max_keys < 1 ? 1 : max_keys)), 0), mask_(slots_.size() - 1) {}

  [[nodiscard]] bool contains(std::uint64_t key) const noexcept {
    for (std::uint64_t i = key & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == key) return true;
      if (slots_[i] == 0) return false;
    }
  }
  void insert(std::uint64_t key) noexcept {  // key != 0; at most max_keys held
    for (std::uint64_t i = key & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == key) return;
      if (slots_[i] == 0) {
        slots_[i] = key;
        return;
      }
    }
  }
  void erase(std::uint64_t key) noexcept {
    std::uint64_t hole = key & mask_;
    for (;; hole = (hole + 1) & mask_) {
      if (slots_[hole] == 0) return;  // not there
      if (slots_[hole] == key) break;
    }
    // Backward shift: an entry after the hole moves into it unless its home lies cyclically in
    // (hole, entry]; then it is already where a probe from its home finds it.
    for (std::uint64_t j = (hole + 1) & mask_; slots_[j] != 0; j = (j + 1) & mask_) {
      const std::uint64_t home = slots_[j] & mask_;
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      slots_[hole] = slots_[j];
      hole = j;
    }
    slots_[hole] = 0;
  }

 private:
  std::vector<std::uint64_t> slots_;
  std::uint64_t mask_;
};

}  // namespace poscache::ingest
