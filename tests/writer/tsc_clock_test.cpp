// The writer's TSC-extrapolated wall clock agrees with CLOCK_REALTIME: every reading lies between
// a CLOCK_REALTIME read just before and one just after it, within a tolerance far above the
// extrapolation error (~1 µs) and far below anything an age or a TTL could notice. Preemption
// between the test's reads only widens the window; preemption inside the clock's own pair of
// readings (an anchor) is what TscClock::sample re-reads, so a loaded machine cannot make this
// fail.
#include "writer/tsc_clock.hpp"

#include <gtest/gtest.h>

using namespace poscache::detail;
using poscache::shm::realtime_ns;

TEST(TscClockTest, AgreesWithTheRealtimeClockAcrossReanchors) {
  TscClock clock;
  constexpr std::int64_t kTolerance = 20'000;  // 20 µs
  const std::int64_t start = realtime_ns();
  std::size_t samples = 0;
  while (realtime_ns() - start < 30'000'000) {  // 30 ms: fifteen re-anchors
    const std::int64_t before = realtime_ns();
    const std::int64_t t = clock.now();
    const std::int64_t after = realtime_ns();
    ASSERT_GE(t, before - kTolerance)
        << "sample " << samples << (clock.uses_tsc() ? " (tsc)" : " (clock_gettime)");
    ASSERT_LE(t, after + kTolerance)
        << "sample " << samples << (clock.uses_tsc() ? " (tsc)" : " (clock_gettime)");
    ++samples;
  }
  EXPECT_GT(samples, 1000u);
}
