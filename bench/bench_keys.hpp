// The key set the benchmarks share: position i is account "acct%07u" (i / 8), instrument "I%u"
// (i % 8) in namespace 0 ("spot", the trading preset).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "poscache/writer.hpp"

namespace poscache::bench {

struct Keys {
  std::vector<std::string> account, instrument;
  explicit Keys(std::size_t n) {
    account.reserve(n);
    instrument.reserve(n);
    char buf[32];
    for (std::size_t i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof buf, "acct%07zu", i / 8);
      account.emplace_back(buf);
      std::snprintf(buf, sizeof buf, "I%zu", i % 8);
      instrument.emplace_back(buf);
    }
  }
  [[nodiscard]] std::size_t size() const { return account.size(); }
};

inline WriterConfig bench_config(const std::string& segment, std::uint64_t capacity) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = capacity;
  c.namespaces = {preset_trading("spot")};
  c.fresh = true;
  return c;
}

// A trading update of position i with every field set (values derived from `v`).
inline Update trading_update(const Writer& w, const Keys& k, std::size_t i, std::uint64_t v) {
  int128 values[kMaxFields] = {};
  for (int f = 0; f < 7; ++f)
    values[f] = static_cast<int128>(v + static_cast<std::uint64_t>(f)) * 1'000'000'000'000'000;
  return *w.make_update(NamespaceId{0}, k.account[i], k.instrument[i], 0x7F, values, 0,
                        UpdateMode::merge);
}

}  // namespace poscache::bench
