// Reader::get_many: get() for many keys, with their cache misses overlapped.
#include "poscache/reader.hpp"
#include "reader/reader_state.hpp"
#include "shm/clock.hpp"
#include "shm/hash.hpp"

namespace poscache {

using namespace shm;
using detail::asking;
using detail::counted;

void Reader::get_many(std::span<const Key> keys, std::span<Position> out,
                      std::span<ReadStatus> status) const noexcept {
  const State& s = *s_;
  const std::size_t n = std::min({keys.size(), out.size(), status.size()});
  const std::int64_t now = coarse_realtime_ns();
  // A software pipeline over the keys, kAhead keys between its stages: key i is hashed and its
  // home bucket requested (1) while key i - kAhead's bucket is read and the slot it names
  // requested (2) and key i - 2 kAhead is read exactly as get() reads it (3). So about kAhead
  // buckets and kAhead slots are in flight at any time. Stages 1 and 2 are hints: nothing they
  // read decides an answer.
  constexpr std::size_t kAhead = 8, kRing = 32;  // kRing > 2 kAhead, a power of two
  std::uint64_t hash[kRing];
  bool valid[kRing];
  for (std::size_t i = 0; i < n + 2 * kAhead; ++i) {
    if (i < n) {  // 1
      const Key& key = keys[i];
      const std::size_t r = i & (kRing - 1);
      valid[r] = key.ns < s.ns_count && !key.account.empty() &&
                 key.account.size() <= kMaxAccountLen && !key.instrument.empty() &&
                 key.instrument.size() <= kMaxInstrumentLen;
      if (valid[r]) {
        hash[r] = key_hash(key.ns, key.account, key.instrument);
        const Bucket* index = s.index[load_relaxed(&s.header->index_epoch) & 1];
        __builtin_prefetch(&index[hash[r] & s.mask]);
      }
    }
    if (i >= kAhead && i - kAhead < n) {  // 2
      const std::size_t j = i - kAhead, r = j & (kRing - 1);
      if (valid[r]) {
        const Bucket* index = s.index[load_relaxed(&s.header->index_epoch) & 1];
        const std::uint64_t b = load_relaxed(&index[hash[r] & s.mask]);
        const std::uint32_t ref = bucket_ref(b);
        if (b != kEmptyBucket && ref != kTombstoneRef && bucket_tag(b) == bucket_tag(hash[r]) &&
            ref - 1u < s.capacity) {
          const auto* line = reinterpret_cast<const char*>(&s.slots[ref - 1u]);
          const std::size_t words = kPayloadFixedWords + 2 * s.slot_count[keys[j].ns];
          for (std::size_t off = 0; off < 8 + words * 8; off += kCacheLine)
            __builtin_prefetch(line + off);
        }
      }
    }
    if (i >= 2 * kAhead) {  // 3
      const std::size_t j = i - 2 * kAhead, r = j & (kRing - 1);
      const Key& key = keys[j];
      const ReadStatus st =
          valid[r] ? lookup_hashed(key.ns, key.account, key.instrument, hash[r], out[j], now)
                   : ReadStatus::bad_key;
      status[j] = counted(s, key.ns,
                          asking(s, key.ns, key.account, key.instrument, hash[r], st, out[j], now));
    }
  }
}

}  // namespace poscache
