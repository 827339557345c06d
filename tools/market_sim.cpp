#include "tools/market_sim.hpp"

#include <algorithm>
#include <cstdio>

namespace poscache::feed {
namespace {

// ten-thousandths -> "123.4500"
std::string money(std::int64_t v) {
  char b[48];
  std::snprintf(b, sizeof b, "%s%lld.%04lld", v < 0 ? "-" : "",
                static_cast<long long>(std::llabs(v) / 10'000),
                static_cast<long long>(std::llabs(v) % 10'000));
  return b;
}
// thousandths -> "1.250"
std::string milli(std::int64_t m) {
  char b[48];
  std::snprintf(b, sizeof b, "%lld.%03lld", static_cast<long long>(m / 1000),
                static_cast<long long>(m % 1000));
  return b;
}
std::string q(const std::string& s) {
  return "\"" + s + "\"";
}

}  // namespace

MarketSim::MarketSim(const MarketConfig& config) : cfg_(config), rng_(config.seed) {
  // Prices in ten-thousandths of a dollar.
  tokens_ = {{"SOL", 1'425'000, 20},
             {"ETH", 31'200'000, 15},
             {"BTC", 645'000'000, 10},
             {"JUP", 9'500, 40}};
  static const char* kWallets[] = {"7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
                                   "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
                                   "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
                                   "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1",
                                   "CuieVDEDtLo7FypA9SbLM9saXFdb1dsshEkyErMqkRQq",
                                   "2q7pyhPwAwZ3QMfZrnAbDhnh9mDUqycszcpf86VgQxhF"};
  for (std::uint32_t i = 0; i < cfg_.wallets; ++i) {
    wallets_.push_back(i < std::size(kWallets) ? kWallets[i] : "wallet" + std::to_string(i));
  }
  held_milli_.assign(wallets_.size(), std::vector<std::int64_t>(tokens_.size(), 0));
  for (std::uint32_t i = 0; i < cfg_.borrowers; ++i) {
    char addr[48];
    std::snprintf(addr, sizeof addr, "0x%016llx%016llx%08x",
                  static_cast<unsigned long long>(rng_()), static_cast<unsigned long long>(rng_()),
                  static_cast<unsigned>(rng_()));
    Borrower b;
    b.address = addr;
    b.collateral = i % 2 ? "ETH" : "SOL";
    b.collateral_wei_k = 1'000 + static_cast<std::int64_t>(rng_() % 20'000);  // 1 to 21 tokens
    // Borrow 68-92% of the collateral's value: health (value x 0.825 / debt) starts between 0.90
    // and 1.21, so some borrowers start or drift below 1 and count unhealthy blocks.
    const auto& tok = *std::find_if(tokens_.begin(), tokens_.end(),
                                    [&](const Token& t) { return t.symbol == b.collateral; });
    const std::int64_t value_usd = b.collateral_wei_k * tok.price_cents / 10'000'000;
    b.debt_usd = value_usd * (68 + static_cast<std::int64_t>(rng_() % 25)) / 100;
    borrowers_.push_back(b);
  }
}

std::string MarketSim::fill(const std::string& wallet, const Token& t) {
  const std::size_t w = static_cast<std::size_t>(&wallet - wallets_.data());
  const std::size_t k = static_cast<std::size_t>(&t - tokens_.data());
  std::int64_t& held = held_milli_[w][k];
  // Lean against the position so it stays bounded; sometimes cross zero.
  const bool buy = held > 20'000 ? rng_() % 4 == 0 : held < -20'000 ? rng_() % 4 != 0 : rng_() % 2;
  const std::int64_t qty = 100 + static_cast<std::int64_t>(rng_() % 5'000);  // 0.1 to 5.1
  held += buy ? qty : -qty;
  // Trades print within a few ticks of the mid.
  const std::int64_t px = std::max<std::int64_t>(
      1, t.price_cents + (static_cast<std::int64_t>(rng_() % 5) - 2) *
                             std::max<std::int64_t>(1, t.price_cents / 2000));
  // Fee: 5 bp of the notional (rounded down to 0.0001, at least that).
  const std::int64_t fee_cents = std::max<std::int64_t>(1, qty * px / 1000 * 5 / 10'000);
  return "{\"op\":\"fill\",\"ns\":" + q(cfg_.trading_ns) + ",\"account\":" + q(wallet) +
         ",\"instrument\":" + q(t.symbol) + ",\"side\":" + (buy ? "\"buy\"" : "\"sell\"") +
         ",\"qty\":" + q(milli(qty)) + ",\"price\":" + q(money(px)) +
         ",\"fee\":" + q(money(fee_cents)) +
         ",\"trade_id\":" + q(cfg_.trade_prefix + "-" + std::to_string(++trades_)) + "}";
}

namespace {
// The ERC-20 contracts of the simulated collateral and of the debt (USDC), as a lending protocol's
// indexer reports them.
constexpr const char* kUsdc = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const char* asset_address(const std::string& symbol) {
  if (symbol == "ETH") return "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";  // WETH
  if (symbol == "BTC") return "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599";  // WBTC
  if (symbol == "SOL") return "0xD31a59c85aE9D8edEFeC411D448f90841571b89c";  // Wormhole SOL
  return "0x0000000000000000000000000000000000000000";
}
}  // namespace

void MarketSim::lending_block(std::vector<std::string>& out) {
  ++block_;
  for (auto& b : borrowers_) {
    const auto& tok = *std::find_if(tokens_.begin(), tokens_.end(),
                                    [&](const Token& t) { return t.symbol == b.collateral; });
    // Base units: collateral in wei (18 decimals), debt in USDC base units at 18 decimals.
    const std::string collateral_wei = std::to_string(b.collateral_wei_k) + "000000000000000";
    const std::string debt_base = std::to_string(b.debt_usd) + "000000000000000000";
    // health = collateral value x threshold / debt, in WAD (18 decimals); threshold 0.825
    const long double value = static_cast<long double>(b.collateral_wei_k) / 1000.0L *
                              static_cast<long double>(tok.price_cents) / 10'000.0L;
    const long double health =
        value * 0.825L / static_cast<long double>(std::max<std::int64_t>(1, b.debt_usd));
    char hf[64];
    std::snprintf(hf, sizeof hf, "%.6Lf", health);
    const bool unhealthy = health < 1.0L;
    out.push_back("{\"op\":\"upsert\",\"ns\":" + q(cfg_.lending_ns) +
                  ",\"account\":" + q(b.address) + ",\"instrument\":" + q(b.collateral) +
                  ",\"fields\":{\"collateral_amount\":" + q(collateral_wei) + ",\"debt_amount\":" +
                  q(debt_base) + ",\"liquidation_threshold\":\"0.825\",\"health_factor\":" + q(hf) +
                  ",\"last_update_block\":" + std::to_string(block_) + ",\"collateral_asset\":" +
                  q(asset_address(b.collateral)) + ",\"debt_asset\":" + q(kUsdc) + "}}");
    out.push_back("{\"op\":\"add\",\"ns\":" + q(cfg_.lending_ns) + ",\"account\":" + q(b.address) +
                  ",\"instrument\":" + q(b.collateral) + ",\"field\":\"blocks_unhealthy\"," +
                  (unhealthy ? "\"by\":1}" : "\"reset\":true}"));
    b.debt_usd += b.debt_usd / 20'000;  // interest accrues
  }
}

std::vector<std::string> MarketSim::step() {
  std::vector<std::string> out;
  ++steps_;
  std::normal_distribution<double> z(0.0, 1.0);
  for (auto& t : tokens_) {
    const double move = z(rng_) * static_cast<double>(t.tick_bp) / 10'000.0;
    t.price_cents = std::max<std::int64_t>(
        1, t.price_cents + static_cast<std::int64_t>(static_cast<double>(t.price_cents) * move));
  }
  for (int i = 0; i < 4; ++i) {
    const auto& w = wallets_[rng_() % wallets_.size()];
    const auto& t = tokens_[rng_() % tokens_.size()];
    out.push_back(fill(w, t));
  }
  for (const auto& t : tokens_) {
    out.push_back("{\"op\":\"mark\",\"ns\":" + q(cfg_.trading_ns) +
                  ",\"instrument\":" + q(t.symbol) + ",\"price\":" + q(money(t.price_cents)) + "}");
    if (!cfg_.quotes_ns.empty()) {
      const std::int64_t half = std::max<std::int64_t>(1, t.price_cents / 4000);
      out.push_back("{\"op\":\"upsert\",\"ns\":" + q(cfg_.quotes_ns) + ",\"account\":\"venue\"," +
                    "\"instrument\":" + q(t.symbol) + ",\"fields\":{\"bid\":" +
                    q(money(t.price_cents - half)) + ",\"ask\":" + q(money(t.price_cents + half)) +
                    ",\"last\":" + q(money(t.price_cents)) + "}}");
    }
  }
  if (!cfg_.lending_ns.empty() && steps_ % 4 == 1) lending_block(out);
  return out;
}

}  // namespace poscache::feed
