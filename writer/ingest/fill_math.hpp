// Fill and mark arithmetic: the average-cost method, exact.
//
// A position in a namespace with the trading fields keeps
//   qty             signed: > 0 long, < 0 short, 0 flat
//   avg_price       the average price of the open quantity (0 when flat)
//   cost_basis      what the open quantity cost: |qty| x avg_price before rounding, i.e. the sum of
//                   |fill qty| x price of the fills that opened it, reduced to |qty| x avg_price
//                   when part of it is closed (0 when flat)
//   realized_pnl    the sum over closing fills of closed_qty x (price - avg_price) for a long,
//                   closed_qty x (avg_price - price) for a short. Fees are NOT subtracted.
//   fees            the sum of the fills' fees (a negative fee, a rebate, lowers it)
//   mark_price      the last mark; unrealized_pnl = qty x (mark_price - avg_price)
//
// A fill of side s (buy +, sell -), quantity q > 0 at price p:
//   adding (flat, or same side): cost_basis += q x p; avg_price = cost_basis / |qty'|
//   reducing (opposite side, q <= |qty|): realize on q; avg_price unchanged (0 if now flat);
//                   cost_basis = |qty'| x avg_price
//   crossing (opposite side, q > |qty|): realize on |qty|, then the rest opens the other side at
//                   p: avg_price = p, cost_basis = |qty'| x p
// After every fill, a position that has a mark_price gets its unrealized_pnl recomputed.
//
// Every product and quotient is computed exactly with 256-bit intermediates and rounded once,
// half to even, to the scale of the field it lands in. A result whose magnitude reaches 10^38
// (the decimal limit), or an intermediate beyond 256 bits, refuses the fill whole, naming the
// field. Worked example (the issue's): buy 10 @ 100, buy 10 @ 110, sell 5 @ 120 -> qty 15,
// avg_price 105, realized_pnl 75; then sell 20 @ 100 -> qty -5, avg_price 100, realized_pnl 0.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "poscache/decimal.hpp"
#include "poscache/error.hpp"
#include "poscache/schema.hpp"
#include "poscache/update.hpp"

namespace poscache::ingest {

using poscache::Side;

// Where the trading fields are in one namespace's schema, and their scales.
struct TradingFields {
  std::uint8_t qty = 0, avg_price = 0, cost_basis = 0, realized_pnl = 0, fees = 0;
  std::optional<std::uint8_t> mark_price, unrealized_pnl;  // what mark needs (fill: optional)
  std::uint8_t scale[kMaxFields] = {};

  // The fields `fill` needs (qty, avg_price, cost_basis, realized_pnl, fees, all decimals), or an
  // error naming the namespace and the first one missing or of the wrong type.
  static Expected<TradingFields> for_fill(const NamespaceSpec& spec);
  // The fields `mark` needs: qty, avg_price, mark_price and unrealized_pnl.
  static Expected<TradingFields> for_mark(const NamespaceSpec& spec);
};

// The trading fields' mantissas (at each field's scale); an unset field is 0.
struct Book {
  int128 qty = 0, avg_price = 0, cost_basis = 0, realized_pnl = 0, fees = 0;
  int128 mark_price = 0, unrealized_pnl = 0;
  bool has_mark = false;
};

struct FillInput {
  Side side = Side::buy;
  int128 qty = 0;    // > 0, at the qty field's scale
  int128 price = 0;  // >= 0, at the avg_price field's scale
  int128 fee = 0;    // at the fees field's scale
};

// The book after the fill, or why the fill is refused (nothing is changed then).
Expected<Book> apply_fill(const TradingFields& f, const Book& before, const FillInput& fill);
// The book after a mark at `price` (at the mark_price field's scale).
Expected<Book> apply_mark(const TradingFields& f, const Book& before, int128 price);

}  // namespace poscache::ingest
