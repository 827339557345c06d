#include "writer/daemon/generator.hpp"

#include <algorithm>
#include <cstdio>

#include "shm/clock.hpp"

namespace poscache::daemon {

namespace {

int128 pow10(unsigned n) {
  int128 v = 1;
  while (n--) v *= 10;
  return v;
}

// A value for field f: a price-like or quantity-like number with 2 decimals, scaled.
int128 value_for(const FieldSpec& f, std::uint64_t r) {
  switch (f.type) {
    case FieldType::int64:
      return static_cast<int128>(r % 50'000'000);
    case FieldType::timestamp:
      return static_cast<int128>(1'700'000'000'000'000'000ll +
                                 static_cast<std::int64_t>(r % 1'000'000'000'000ll));
    case FieldType::decimal:
    case FieldType::text:  // (filled by make(): an asset address)
      break;
  }
  const int128 cents = static_cast<int128>(r % 10'000'000) -
                       (f.name.find("pnl") != std::string::npos ? 5'000'000 : 0);
  return f.scale >= 2 ? cents * pow10(f.scale - 2) : cents / pow10(2 - f.scale);
}

}  // namespace

// The source sequence starts at the wall clock in ns and counts up by one per update, as the
// writer's versions do: a generator restarted on an existing segment (a daemon restart) then
// out-sequences everything its predecessor wrote, instead of having every update refused as
// stale_source until it caught up.
SyntheticGenerator::SyntheticGenerator(const GeneratorConfig& config, const Writer&)
    : cfg_(config),
      rng_(config.seed),
      source_seq_(static_cast<std::uint64_t>(shm::realtime_ns())),
      batch_(kMaxBatch),
      results_(kMaxBatch) {
  static const char* kSymbols[] = {"SOL",  "BTC",  "ETH",  "USDC", "JUP",
                                   "BONK", "AAPL", "MSFT", "NVDA", "TSLA"};
  char buf[64];
  for (std::uint32_t i = 0; i < cfg_.accounts; ++i) {
    std::snprintf(buf, sizeof buf, "acct%06u", i);
    accounts_.emplace_back(buf);
  }
  for (std::uint32_t i = 0; i < cfg_.instruments; ++i) {
    if (i < std::size(kSymbols)) {
      instruments_.emplace_back(kSymbols[i]);
    } else {
      std::snprintf(buf, sizeof buf, "INS%05u", i);
      instruments_.emplace_back(buf);
    }
  }
}

Update SyntheticGenerator::make(const Writer& writer, std::uint64_t n) {
  const auto& specs = writer.namespaces();
  const std::uint64_t r = rng_();
  const auto ns = static_cast<NamespaceId>(n % specs.size());
  const std::string& account = accounts_[(r >> 8) % accounts_.size()];
  const std::string& instrument = instruments_[(r >> 40) % instruments_.size()];
  const NamespaceSpec& spec = specs[ns];
  int128 values[kMaxFields] = {};
  std::uint32_t mask = 0;
  // Asset addresses for text fields (the lending preset's collateral and debt assets).
  static constexpr const char* kAssets[] = {"0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",   // WETH
                                            "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",   // USDC
                                            "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599",   // WBTC
                                            "0x6B175474E89094C44Da98b954EedeAC495271d0F"};  // DAI
  for (std::size_t f = 0; f < spec.fields.size(); ++f) {
    if (spec.fields[f].type == FieldType::text) {
      // An order status for a field named so; an asset address otherwise.
      static constexpr const char* kStatuses[] = {"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED"};
      const bool status = spec.fields[f].name.find("status") != std::string::npos;
      const std::string_view a =
          status ? kStatuses[rng_() % std::size(kStatuses)] : kAssets[rng_() % std::size(kAssets)];
      put_text(values, field_slot(spec.fields, f), spec.fields[f].length,
               a.substr(0, spec.fields[f].length));
    } else {
      values[f] = value_for(spec.fields[f], rng_());
    }
    mask |= 1u << f;
  }
  // Generated keys and values are valid by construction; make_update checks them anyway.
  return *writer.make_update(ns, account, instrument, mask, values, ++source_seq_,
                             UpdateMode::replace);
}

std::size_t SyntheticGenerator::poll(ingest::CommandExecutor& exec, std::int64_t now_ns,
                                     std::size_t budget) {
  Writer& writer = exec.writer();
  if (start_ns_ == 0) start_ns_ = now_ns;
  const double due_total = static_cast<double>(now_ns - start_ns_) * cfg_.rate / 1e9;
  const auto due =
      static_cast<std::uint64_t>(std::max(0.0, due_total - static_cast<double>(emitted_)));
  const std::size_t n = std::min<std::uint64_t>(std::min<std::uint64_t>(due, budget), kMaxBatch);
  for (std::size_t i = 0; i < n; ++i) batch_[i] = make(writer, emitted_++);
  writer.upsert_batch(std::span(batch_.data(), n), std::span(results_.data(), n));
  counters_.received += n;
  for (std::size_t i = 0; i < n; ++i) {
    const ApplyStatus st = results_[i].status;
    if (st == ApplyStatus::inserted || st == ApplyStatus::updated) {
      ++counters_.applied;
    } else if (st == ApplyStatus::stale_source) {
      ++counters_.ignored;
      ++counters_.stale;
    } else {
      ++counters_.rejected;
    }
  }
  return n;
}

}  // namespace poscache::daemon
