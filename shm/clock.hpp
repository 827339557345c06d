// Wall-clock time in nanoseconds. clock_gettime(CLOCK_REALTIME) is served by the vDSO (no system
// call) when the kernel's clocksource is tsc, as on the machines we run on; the no-syscall test
// (tests/reader/reader_syscall_test.cpp) proves it for get() on the machine that runs the suite.
#pragma once

#include <time.h>

#include <cstdint>

namespace poscache::shm {

inline std::int64_t realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// CLOCK_REALTIME_COARSE: the kernel's last tick time, read from the vDSO page with no rdtsc and
// no fence (the precise clock's rdtsc is ordered by an lfence, which stops the CPU from
// overlapping one get()'s cache misses with the next one's). Resolution: one kernel tick
// (1-4 ms). Used for ages and staleness on the read path, where stale_after is milliseconds or
// more; callers needing exact ages pass their own clock.
inline std::int64_t coarse_realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline std::int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace poscache::shm
