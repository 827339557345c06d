// The writer's clock (writer-only: readers use shm/clock.hpp).
#pragma once

#include <time.h>

#include <cstdint>
#include <fstream>
#include <string>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "shm/clock.hpp"

namespace poscache::detail {

// The writer's wall clock: CLOCK_REALTIME extrapolated with the TSC between anchors.
//
// Every change stamps updated_at, so the apply path reads the clock once per upsert() (once per
// chunk in upsert_batch()). clock_gettime costs ~23 ns here even from the vDSO (an ordered
// rdtsc, the vDSO's sequence counter, the conversion): a third of a cached update, and on the
// path to a reader seeing the change. This clock reads the TSC unordered (~7 ns) and scales it:
//   now = anchor_ns + (tsc - anchor_tsc) * ns_per_tick
// It re-anchors on CLOCK_REALTIME every 2 ms of TSC time (inside now(): no caller has to tick
// it), so NTP slewing or a clock step shows within 2 ms; ns_per_tick is measured over 1 ms at
// construction and refined from the first anchor to the latest (error ~1e-5, ~20 ns over the 2 ms
// between anchors). The result is not monotonic by itself (a re-anchor may land behind the
// extrapolation): the writer clamps, as it does for CLOCK_REALTIME stepping back.
// Only when the kernel's clocksource is "tsc" (it has then checked that the TSC is invariant and
// synchronized across CPUs); otherwise, and off x86-64, it is plain clock_gettime.
class TscClock {
 public:
  TscClock() {
#if defined(__x86_64__)
    std::ifstream cs("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    std::string name;
    use_tsc_ = static_cast<bool>(cs >> name) && name == "tsc";
    if (!use_tsc_) return;
    sample(first_ns_, first_tsc_);
    std::int64_t n = first_ns_;
    std::uint64_t t = first_tsc_;
    while (n - first_ns_ < 1'000'000) sample(n, t);  // 1 ms of both clocks
    ns_per_tick_ = static_cast<double>(n - first_ns_) / static_cast<double>(t - first_tsc_);
    reanchor_ticks_ = static_cast<std::uint64_t>(2'000'000 / ns_per_tick_);
    anchor_ns_ = n;
    anchor_tsc_ = t;
#endif
  }

  std::int64_t now() noexcept {
#if defined(__x86_64__)
    if (use_tsc_) {
      const std::uint64_t d = __rdtsc() - anchor_tsc_;
      if (d < reanchor_ticks_)
        return anchor_ns_ + static_cast<std::int64_t>(static_cast<double>(d) * ns_per_tick_);
      sample(anchor_ns_, anchor_tsc_);
      if (anchor_ns_ - first_ns_ > 100'000'000) {  // a longer baseline, once there is one
        ns_per_tick_ = static_cast<double>(anchor_ns_ - first_ns_) /
                       static_cast<double>(anchor_tsc_ - first_tsc_);
      }
      return anchor_ns_;
    }
#endif
    return shm::realtime_ns();
  }

  [[nodiscard]] bool uses_tsc() const noexcept {
    return use_tsc_;
  }

 private:
#if defined(__x86_64__)
  // One reading of both clocks at the same instant: the TSC read on either side of
  // CLOCK_REALTIME, its midpoint taken. A pair the thread was preempted inside (the two TSC
  // reads far apart: a normal pair is ~100 ticks) is read again, else an anchor would be off by
  // the preemption (milliseconds) until the next one, and the scale measured at construction by
  // as much as the preemption against 1 ms. After 8 tries the tightest pair is taken.
  static void sample(std::int64_t& ns, std::uint64_t& tsc) noexcept {
    constexpr std::uint64_t kMaxPairTicks = 20'000;  // ~5-10 us at 2-4 GHz
    std::uint64_t best = ~std::uint64_t{0};
    for (int attempt = 0; attempt < 8; ++attempt) {
      const std::uint64_t t1 = __rdtsc();
      const std::int64_t n = shm::realtime_ns();
      const std::uint64_t t2 = __rdtsc();
      if (t2 - t1 < best) {
        best = t2 - t1;
        ns = n;
        tsc = t1 + (t2 - t1) / 2;
      }
      if (best < kMaxPairTicks) return;
    }
  }
#endif

  bool use_tsc_ = false;
  double ns_per_tick_ = 0;
  std::uint64_t reanchor_ticks_ = 0;
  std::int64_t anchor_ns_ = 0, first_ns_ = 0;
  std::uint64_t anchor_tsc_ = 0, first_tsc_ = 0;
};

}  // namespace poscache::detail
