// Fill and mark arithmetic: the average-cost method, each derived value rounded once.
//
// A position in a namespace with the trading fields keeps, each as an exact decimal at its
// field's scale (the mantissas below are read as those decimals):
//   Q  qty             signed: > 0 long, < 0 short, 0 flat;            s = sign(Q) (+1, -1, 0)
//   A  avg_price       the quantity-weighted average price of the open quantity (0 when flat)
//   C  cost_basis      what the open quantity cost, >= 0 (0 when flat)
//   R  realized_pnl    P&L of the quantity closed so far. Fees are NOT subtracted.
//   F  fees            the sum of the fills' fees (a negative fee, a rebate, lowers it)
//   M  mark_price      the last mark (optional)
//   U  unrealized_pnl  P&L of the open quantity at M: Q x M - s x C
//
// [x]_f is x rounded half to even to the scale of field f; every product and quotient below is
// computed exactly (256-bit integers) and rounded once, where it lands. A fill of side d (buy
// +1, sell -1), quantity q > 0, price p >= 0 (at avg_price's scale) and fee phi; Q' = Q + d x q.
// Its cash, [q x p]_C, is rounded once; C and R move by cash amounts (C + [x], not [C + x]:
// half to even is not invariant under a shift by one unit, and FI4 needs the former):
//   opening   Q = 0 or s = d       A' = [(|Q| x A + q x p) / |Q'|]_A     C' = C + [q x p]_C
//                                  R' = R
//   reducing  s = -d, q <= |Q|     C' = [C x |Q'| / |Q|]_C               A' = A (0 if Q' = 0)
//                                  R' = R + [s x ([q x p]_C - (C - C'))]_R
//   crossing  s = -d, q > |Q|      closes |Q| as a reduction to flat:
//                                  R' = R + [s x ([|Q| x p]_C - C)]_R
//                                  then opens |Q'| at p:   A' = p, C' = [|Q'| x p]_C
//   always                         F' = F + phi;  with a mark: U' = [Q' x M - s' x C']_U
// A mark at m: M' = m, U' = [Q x m - s x C]_U.
// A position that holds no cost_basis (upserted with qty and avg_price only, or a namespace
// without the field) is taken to have cost C = [|Q| x A]_C by a fill, and is marked from its
// average, U' = [Q x (m - A)]_U.
//
// Why two states, A and C, and not one derived from the other: A is kept from exact values
// (|Q| x A and q x p are exact at qty's scale + avg's), so dust keeps its price — buy
// 0.000000000000000001 @ 123.456 has A = 123.456, where C = [1.23456e-16]_C is 0.000000000000000123
// and C / |Q| would say 123. C is the money: realized and unrealized P&L come from it, so their
// error is at most a unit of C's last place per rounding, never amplified by a large quantity
// as closed x (p - A) would be by A's rounding (30 @ 100.1666...667 marked at 101.25 is
// 30 x 101.25 - 3005 = 32.5, not 32.49999999999999999).
//
// Invariants (tests/ingest/fill_math_test.cpp; ExecutorTest in tests/ingest/executor_test.cpp
// checks them over 10^5 random fills against an independent reference,
// tests/ingest/fill_reference.py):
//   FI1 Q is the signed sum of the fills' quantities and F the sum of their fees, exactly.
//   FI2 flat: Q = 0 => A = 0, C = 0. After one opening fill from flat, A = p and C = [q x p]_C.
//   FI3 A lies between the lowest and the highest price of the fills that opened the position
//      (since it was last flat or crossed): with positive prices, A = 0 only when flat.
//   FI4 P&L is conserved: when R's scale is at least C's (the presets: equal), R - s x C equals
//      the cash of the fills, -sum of d x [q x p]_C, a crossing fill's cash taken in its closing
//      and opening parts. No rounding creates or loses money between realized and open P&L.
//   FI5 U = [Q x M - s x C]_U: realized + unrealized is the fills' P&L at the mark.
//
// A result whose magnitude reaches 10^38 (the decimal limit), or an intermediate beyond 256
// bits, refuses the fill whole, naming the field. Worked example: buy 10 @ 100, buy 10 @ 110,
// sell 5 @ 120 -> qty 15, avg_price 105, cost_basis 1575, realized_pnl 75; then sell 20 @ 100
// -> qty -5, avg_price 100, cost_basis 500, realized_pnl 0.
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
  bool has_cost_field = true;  // mark: the namespace has a decimal cost_basis
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
  // The position holds a cost_basis. One upserted with qty and avg_price only did not: a fill
  // takes its cost as [|Q| x A]_C, a mark values it from avg_price, [Q x (M - A)]_U.
  bool has_cost = true;
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
