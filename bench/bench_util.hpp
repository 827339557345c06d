// Shared by the benchmarks: the TSC clock, percentiles, CPU pinning, flag parsing, and the
// floors every benchmark prints beside its own figures.
#pragma once

#include <sched.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace poscache::bench {

// The TSC is invariant here (constant_tsc, nonstop_tsc) and ticks far finer than the 10 ns
// steps of clock_gettime on these virtual machines. Calibrated once against CLOCK_MONOTONIC.
inline std::uint64_t ticks() noexcept {
  return __rdtsc();
}
inline std::uint64_t ticks_ordered() noexcept {
  unsigned aux;
  return __rdtscp(&aux);
}
inline double ns_per_tick() {
  static const double v = [] {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t c0 = ticks();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::uint64_t c1 = ticks();
    const auto t1 = std::chrono::steady_clock::now();
    return static_cast<double>(
               std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) /
           static_cast<double>(c1 - c0);
  }();
  return v;
}

// Pins the calling thread to `cpu`; -1 lets it run anywhere again.
// The CPU's model name (/proc/cpuinfo): printed with every figure, hosts differ.
inline std::string cpu_name() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  char line[512];
  std::string name = "unknown CPU";
  while (f != nullptr && std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "model name", 10) == 0) {
      name = std::strchr(line, ':') + 2;
      name.pop_back();
      break;
    }
  }
  if (f != nullptr) std::fclose(f);
  return name;
}

inline void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  for (int c = 0; c < n; ++c) {
    if (cpu < 0 || c == cpu) CPU_SET(c, &set);
  }
  sched_setaffinity(0, sizeof set, &set);
}

// How this process maps segment `name` (/proc/self/smaps): "2 MiB pages (N of M MiB)" or
// "4 KiB pages". Huge pages spare a random access its TLB miss: at a million positions they
// change the writer's throughput by ~15 % (docs/operations.md, "Huge pages"), so every figure
// says which.
// "2 MiB pages (534 of 535 MiB)" or "4 KiB pages", from the mapping's own count of huge bytes
// (WriterStats::huge_page_bytes, Reader::huge_page_bytes).
inline std::string segment_pages(std::uint64_t huge_bytes, std::uint64_t segment_bytes) {
  if (huge_bytes == 0) return "4 KiB pages";
  return "2 MiB pages (" + std::to_string(huge_bytes >> 20) + " of " +
         std::to_string(segment_bytes >> 20) + " MiB)";
}

struct Percentiles {
  double p50 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0, mean = 0;
  std::size_t n = 0;
};

// `samples` in ticks (or ns if ns_per_sample = 1).
inline Percentiles percentiles(std::vector<double>& samples) {
  Percentiles p;
  if (samples.empty()) return p;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1,
                            static_cast<std::size_t>(q * static_cast<double>(samples.size())))];
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.p9999 = at(0.9999);
  p.max = samples.back();
  double sum = 0;
  for (double s : samples) sum += s;
  p.mean = sum / static_cast<double>(samples.size());
  p.n = samples.size();
  return p;
}

inline void print_row(const std::string& what, const Percentiles& p,
                      const std::string& extra = "") {
  std::printf("  %-66s p50 %7.1f  p99 %7.1f  p99.9 %8.1f  max %9.1f ns  (n=%zu)%s\n", what.c_str(),
              p.p50, p.p99, p.p999, p.max, p.n, extra.c_str());
  std::fflush(stdout);
}

// Host stalls: a loop that only reads the TSC for `seconds`, counting the gaps between two reads
// (an interrupt, the hypervisor running something else): the floor of any "longest" measured on
// this CPU over as long.
struct Stalls {
  double seconds = 0;
  std::uint64_t over_20us = 0, over_50us = 0;
  double longest_ns = 0;
};
inline Stalls stalls(double seconds) {
  Stalls s;
  s.seconds = seconds;
  const double tick_ns = ns_per_tick();
  const auto t20 = static_cast<std::uint64_t>(20'000 / tick_ns);
  const auto t50 = static_cast<std::uint64_t>(50'000 / tick_ns);
  std::uint64_t prev = ticks();
  const std::uint64_t end = prev + static_cast<std::uint64_t>(seconds * 1e9 / tick_ns);
  std::uint64_t longest = 0;
  while (prev < end) {
    const std::uint64_t t = ticks();
    const std::uint64_t gap = t - prev;
    s.over_20us += gap > t20;
    s.over_50us += gap > t50;
    longest = std::max(longest, gap);
    prev = t;
  }
  s.longest_ns = static_cast<double>(longest) * tick_ns;
  return s;
}

// "--name value" flags with defaults; unknown flags are an error naming them.
class Flags {
 public:
  Flags(int argc, char** argv, std::map<std::string, std::string> defaults, const char* usage)
      : values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s\n", usage);
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0 || i + 1 >= argc || !values_.count(a.substr(2))) {
        std::fprintf(stderr, "unknown or incomplete flag '%s'\n%s\n", a.c_str(), usage);
        std::exit(2);
      }
      values_[a.substr(2)] = argv[++i];
    }
  }
  [[nodiscard]] std::string str(const std::string& k) const { return values_.at(k); }
  [[nodiscard]] long long num(const std::string& k) const { return std::stoll(values_.at(k)); }
  [[nodiscard]] double real(const std::string& k) const { return std::stod(values_.at(k)); }
  [[nodiscard]] std::vector<long long> list(const std::string& k) const {
    std::vector<long long> out;
    std::string v = values_.at(k);
    std::size_t start = 0;
    while (start <= v.size()) {
      const std::size_t comma = v.find(',', start);
      out.push_back(std::stoll(v.substr(start, comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

// Floor: a cache line handed between two cores and back, `rounds` times, by two threads pinned
// to cpu_a and cpu_b. With `hold_ns`, cpu_b holds each round for `hold_ns` (spinning on the TSC)
// before it answers, so a round lasts as long as the path being measured and is exposed to the same
// timer interrupts, VM exits and preemptions. Samples are whole round trips, in ns. What this shows
// at p99.9 no code on this host can beat.
inline std::vector<double> held_round_trip(int cpu_a, int cpu_b, int rounds, double hold_ns) {
  alignas(64) static std::atomic<std::uint64_t> line{0};
  line.store(0);
  const double npt = ns_per_tick();
  const auto hold = static_cast<std::uint64_t>(hold_ns / npt);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  std::thread other([&] {
    pin_to_cpu(cpu_b);
    for (int r = 0; r < rounds; ++r) {
      const std::uint64_t v = 2ull * static_cast<std::uint64_t>(r) + 1;
      while (line.load(std::memory_order_acquire) != v) {
      }
      if (hold > 0) {
        const std::uint64_t t = ticks();
        while (ticks() - t < hold) {
        }
      }
      line.store(v + 1, std::memory_order_release);
    }
  });
  pin_to_cpu(cpu_a);
  for (int r = 0; r < rounds; ++r) {
    const std::uint64_t v = 2ull * static_cast<std::uint64_t>(r) + 1;
    const std::uint64_t t0 = ticks_ordered();
    line.store(v, std::memory_order_release);
    while (line.load(std::memory_order_acquire) != v + 1) {
    }
    samples.push_back(static_cast<double>(ticks_ordered() - t0) * npt);
  }
  other.join();
  pin_to_cpu(-1);
  return samples;
}

// One cache line handed from cpu_a to cpu_b and back, `rounds` times: the one-way time (half of
// each round trip), the floor for anything that crosses between two cores.
inline std::vector<double> cache_line_ping_pong(int cpu_a, int cpu_b, int rounds) {
  std::vector<double> samples = held_round_trip(cpu_a, cpu_b, rounds, 0);
  for (double& x : samples) x /= 2.0;
  return samples;
}

}  // namespace poscache::bench
