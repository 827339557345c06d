#include "poscache/mirror_status.hpp"

#include <algorithm>

#include "shm/clock.hpp"
#include "shm/layout.hpp"
#include "shm/seqlock.hpp"

namespace poscache {

using namespace shm;

MirrorStatus mirror_status(const Reader& reader) {
  const auto& h = *static_cast<const SegmentHeader*>(reader.mapping_base());
  MirrorStatus st;
  st.state = redis_state_name(load_relaxed(&h.redis_state));
  // The error text is under a seqlock of its own (shm/seqlock.hpp), written by the sync thread.
  std::uint64_t words[kRedisErrorWords];
  if (seqlock_read_bounded(&h.redis_error_seq, h.redis_error, words, kRedisErrorWords)) {
    const std::size_t len = std::min<std::size_t>(load_relaxed(&h.redis_error_len), sizeof words);
    st.last_error.assign(reinterpret_cast<const char*>(words), len);
  }
  st.dirty = load_relaxed(&h.redis_dirty);
  const std::int64_t oldest = load_relaxed(&h.redis_oldest_unsynced_ns);
  st.oldest_unsynced_age_ns = oldest > 0 ? std::max<std::int64_t>(0, realtime_ns() - oldest) : 0;
  st.synced_version = load_relaxed(&h.redis_synced_version);
  st.journal_pending = published_journal_pending(h);
  st.journal_overflows = load_relaxed(&h.journal_overflows);
  st.lease_epoch = load_relaxed(&h.redis_lease_epoch);
  st.data_losses = load_relaxed(&h.redis_data_losses);
  st.repushed = load_relaxed(&h.redis_repushed);
  const std::uint32_t w = load_relaxed(&h.redis_warnings);
  st.refilling = (w & kRedisRefilling) != 0;
  st.evicting_policy = (w & kRedisEvicts) != 0;
  st.follow_state = follow_state_name(load_relaxed(&h.follow_state));
  st.follow_lag_ns = load_relaxed(&h.follow_lag_ns);
  st.follow_entries = load_relaxed(&h.follow_entries);
  st.follow_reloads = load_relaxed(&h.follow_reloads);
  return st;
}

}  // namespace poscache
