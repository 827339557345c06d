// A small market for demos: wallets trading a few tokens at prices that random-walk, their
// positions marked to market, lending positions whose health moves with the collateral's price,
// and quotes. Everything it emits is a JSON-lines ingest command (writer/ingest/json_codec.hpp),
// the same a real producer sends, so P&L in the cache follows from the fills: qty, avg_price,
// realized and unrealized P&L, fees are the writer's own fill arithmetic, not invented numbers.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace poscache::feed {

struct MarketConfig {
  std::string trading_ns = "spot";
  std::string lending_ns = "lending";
  std::string quotes_ns = "quotes";  // "" = no quotes
  std::uint32_t wallets = 8;
  std::uint32_t borrowers = 6;
  std::uint64_t seed = 7;
  std::string trade_prefix = "sim";  // trade ids: <prefix>-<n>
};

class MarketSim {
 public:
  explicit MarketSim(const MarketConfig& config);
  // The commands of one step (about 100 ms of market): prices move, a few fills, marks for every
  // token, quotes, and every few steps a new block for the lending book.
  std::vector<std::string> step();
  [[nodiscard]] std::uint64_t steps() const noexcept { return steps_; }

 private:
  struct Token {
    std::string symbol;
    std::int64_t price_cents;  // mid price in 0.0001 dollars: prices stay exact decimals
    std::int64_t tick_bp;      // volatility per step, basis points
  };
  struct Borrower {
    std::string address;
    std::string collateral;             // a token symbol (its price drives health)
    std::int64_t collateral_wei_k = 0;  // collateral in units of 10^15 wei (0.001 token)
    std::int64_t debt_usd = 0;          // debt in whole USDC
    std::int64_t blocks_unhealthy = 0;
  };
  std::string fill(const std::string& wallet, const Token& t);
  void lending_block(std::vector<std::string>& out);

  MarketConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<Token> tokens_;
  std::vector<std::string> wallets_;
  std::vector<std::vector<std::int64_t>> held_milli_;  // wallet x token: qty in 0.001 units
  std::vector<Borrower> borrowers_;
  std::uint64_t steps_ = 0, trades_ = 0, block_ = 19'000'000;
};

}  // namespace poscache::feed
