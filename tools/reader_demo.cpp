// poscache-reader-demo: what a trading process does with the reader library, in one screen.
// It maps the segment read-only, resolves namespace ids once, then reads positions in a tight
// loop and prints, every second, how many reads it made, what they returned and what they cost.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "poscache/version.h"
#include "shm/clock.hpp"

using namespace poscache;

int main(int argc, char** argv) {
  std::string segment = "poscache";
  int seconds = 5, accounts = 100, instruments = 20;
  constexpr const char* kUsage =
      "usage: poscache-reader-demo [--segment S] [--seconds N] [--accounts N] [--instruments N]";
  auto usage_error = [&](const std::string& what) {
    std::fprintf(stderr, "poscache-reader-demo: %s\n%s\n", what.c_str(), kUsage);
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--version") {
      std::printf("poscache-reader-demo %s\n", POSCACHE_VERSION);
      return 0;
    }
    if (a == "--help" || a == "-h") {
      std::printf("%s\n", kUsage);
      return 0;
    }
    int* number = a == "--seconds"       ? &seconds
                  : a == "--accounts"    ? &accounts
                  : a == "--instruments" ? &instruments
                                         : nullptr;
    if (number == nullptr && a != "--segment") return usage_error("unknown argument " + a);
    if (i + 1 >= argc) return usage_error(a + " needs a value");
    const std::string v = argv[++i];
    if (number == nullptr) {
      segment = v;
      continue;
    }
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *number);
    if (ec != std::errc() || end != v.data() + v.size() || *number <= 0)
      return usage_error(a + " " + v + ": a whole number above 0 is expected");
  }
  std::optional<Reader> reader;
  try {
    reader.emplace(Reader::open(segment));
  } catch (const Error& e) {
    std::fprintf(stderr, "poscache-reader-demo: %s\n", e.what());
    return 3;
  }
  Reader& r = *reader;
  // The keys the demo generator writes (see writer/daemon/generator.cpp).
  static const char* kSymbols[] = {"SOL",  "BTC",  "ETH",  "USDC", "JUP",
                                   "BONK", "AAPL", "MSFT", "NVDA", "TSLA"};
  std::vector<std::string> accts, insts;
  char buf[32];
  for (int i = 0; i < accounts; ++i) {
    std::snprintf(buf, sizeof buf, "acct%06d", i);
    accts.emplace_back(buf);
  }
  for (int i = 0; i < instruments; ++i) {
    if (i < 10)
      insts.emplace_back(kSymbols[i]);
    else {
      std::snprintf(buf, sizeof buf, "INS%05d", i);
      insts.emplace_back(buf);
    }
  }
  const NamespaceId spot = r.namespace_id("spot").value_or(0);
  std::printf("reader pid %d mapped '%s' read-only: %zu namespaces, writer pid %lld %s\n",
              static_cast<int>(::getpid()), segment.c_str(), r.namespaces().size(),
              static_cast<long long>(r.writer().pid), r.writer().alive ? "alive" : "not alive");
  std::uint64_t x = 88172645463325252ull;
  for (int s = 0; s < seconds; ++s) {
    std::uint64_t counts[8] = {};
    std::vector<std::int64_t> lat;
    lat.reserve(1 << 16);
    Position p, sample;
    bool have_sample = false;
    const std::int64_t end = shm::monotonic_ns() + 1'000'000'000;
    std::uint64_t reads = 0;
    while (shm::monotonic_ns() < end) {
      // A batch of 64 gets timed together (the clock here ticks in 10 ns steps).
      const std::int64_t t0 = shm::monotonic_ns();
      for (int k = 0; k < 64; ++k) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const ReadStatus st =
            r.get(spot, accts[x % accts.size()], insts[(x >> 32) % insts.size()], p);
        ++counts[static_cast<int>(st)];
        if (has_value(st) && !have_sample) {
          sample = p;
          have_sample = true;
        }
      }
      lat.push_back((shm::monotonic_ns() - t0) / 64);
      reads += 64;
    }
    std::sort(lat.begin(), lat.end());
    std::printf(
        "%6.2f M gets/s  ok %llu  stale %llu  not_found %llu  busy %llu  | mean of 64: p50 %lld ns "
        " p99 %lld ns\n",
        static_cast<double>(reads) / 1e6, static_cast<unsigned long long>(counts[0]),
        static_cast<unsigned long long>(counts[1]), static_cast<unsigned long long>(counts[2]),
        static_cast<unsigned long long>(counts[3] + counts[4]),
        static_cast<long long>(lat[lat.size() / 2]),
        static_cast<long long>(lat[lat.size() * 99 / 100]));
    if (have_sample) {
      const NamespaceInfo& ns = r.namespace_info(sample.ns);
      std::printf("         e.g. %s qty=%s avg_price=%s version %llu, %.1f ms old\n",
                  key_string(ns, sample).c_str(), format_field(ns, sample, 0).c_str(),
                  format_field(ns, sample, 1).c_str(),
                  static_cast<unsigned long long>(sample.version),
                  static_cast<double>(sample.age_ns) / 1e6);
    }
  }
  const std::uint64_t seen = r.change_sequence();
  const bool changed = r.wait_for_change(seen, std::chrono::seconds(1));
  std::printf("wait_for_change: %s (change sequence %llu -> %llu)\n",
              changed ? "woken by the writer" : "timed out", static_cast<unsigned long long>(seen),
              static_cast<unsigned long long>(r.change_sequence()));
  return 0;
}
