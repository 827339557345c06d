// A Reader's side of read-through (shm/refresh.hpp argues the protocols RQ and RT): its request
// ring in /dev/shm/<segment>.requests, the read-only view of /dev/shm/<segment>.refresh, and the
// writer's wake socket. Internal to the reader library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "poscache/position.hpp"
#include "poscache/refresh.hpp"
#include "poscache/status.hpp"
#include "shm/refresh.hpp"

namespace poscache::detail {

class RefreshChannel {
 public:
  // Maps the files of `generation` and claims a ring (RQ1). Null, with `why_not`, when the writer
  // serves no refresh (no files), they belong to another generation, or every ring is taken.
  static std::unique_ptr<RefreshChannel> open(std::string_view segment, std::uint64_t generation,
                                              std::string& why_not);
  ~RefreshChannel();
  RefreshChannel(const RefreshChannel&) = delete;
  RefreshChannel& operator=(const RefreshChannel&) = delete;

  [[nodiscard]] const shm::RefreshPolicyWords& policy(NamespaceId ns) const noexcept {
    return header_->policy[ns];
  }

  // get()'s hook, inline for its common case: nothing to ask. `st` and `p` are get()'s answer.
  void after_read(NamespaceId ns, std::string_view account, std::string_view instrument,
                  std::uint64_t hash, ReadStatus st, const Position& p,
                  std::int64_t now_ns) const noexcept {
    const shm::RefreshPolicyWords& pol = policy(ns);
    RefreshReason why;
    if (st == ReadStatus::ok) {
      const std::int64_t ahead = shm::load_relaxed(&pol.ahead_ns);
      if (ahead == 0 || p.age_ns <= ahead) return;
      why = RefreshReason::ahead;
    } else if (st == ReadStatus::stale) {
      if ((shm::load_relaxed(&pol.on) & shm::kOnStale) == 0) return;
      why = RefreshReason::stale;
    } else if (st == ReadStatus::not_found) {
      if ((shm::load_relaxed(&pol.on) & shm::kOnMiss) == 0) return;
      why = RefreshReason::miss;
    } else {
      return;
    }
    // The common case of a hot stale key, inline: its refresh is in flight already (RT2).
    if (shm::pending_state(shm::find_pending(refresh_, hash)) == PendingState::pending) return;
    ask(ns, account, instrument, hash, why, now_ns);
  }

  // RQ2-RQ3 after the de-duplication checks (the pending table, this reader's recent asks).
  // No system call, no allocation, never waits.
  RequestStatus ask(NamespaceId ns, std::string_view account, std::string_view instrument,
                    std::uint64_t hash, RefreshReason why, std::int64_t now_ns) const noexcept;
  // The same without the checks (a forced request still skips a key in flight).
  RequestStatus push(NamespaceId ns, std::string_view account, std::string_view instrument,
                     std::uint64_t hash, RefreshReason why, std::int64_t now_ns) const noexcept;

  [[nodiscard]] PendingInfo pending(std::uint64_t hash) const noexcept;
  [[nodiscard]] RefreshStats stats() const noexcept;
  [[nodiscard]] std::uint64_t pending_word(std::uint64_t hash) const noexcept {
    return shm::find_pending(refresh_, hash);
  }
  [[nodiscard]] const std::uint32_t* wake_word(std::uint64_t hash) const noexcept {
    return &shm::wake_words(refresh_)[shm::pending_hash(hash) % shm::kWakeWords];
  }
  // Tells the writer's apply loop to look at the rings now (get_or_fetch: a system call).
  void ring_doorbell_now() const noexcept;

 private:
  RefreshChannel() = default;
  const shm::RefreshHeader* header_ = nullptr;
  const void* refresh_ = nullptr;
  void* requests_ = nullptr;
  shm::RequestRing* ring_ = nullptr;
  std::uint32_t ring_index_ = 0;
  int wake_fd_ = -1;
  std::string wake_path_;
  // This reader's recent asks (hash, time), so that many get()s of one stale key before the
  // writer publishes `pending` ask once. Threads may race on an entry: at worst one more ask.
  struct Asked {
    std::uint64_t hash;
    std::int64_t at_ns;
  };
  static constexpr std::size_t kAsked = 64;
  mutable Asked asked_[kAsked] = {};
};

}  // namespace poscache::detail
