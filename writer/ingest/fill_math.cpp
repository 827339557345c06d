#include "writer/ingest/fill_math.hpp"

// boost::multiprecision's checked fixed-width integer: 256 bits, and an overflow throws
// std::overflow_error instead of wrapping, which the fill turns into a refusal.
#include <boost/multiprecision/cpp_int.hpp>
#include <stdexcept>

namespace poscache::ingest {
namespace {

namespace mp = boost::multiprecision;
using Wide = mp::checked_int256_t;

Wide wide(int128 v) {
  // cpp_int has no __int128 constructor: build it from the two 64-bit halves.
  const bool neg = v < 0;
  const unsigned __int128 m = neg ? -static_cast<unsigned __int128>(v) : v;
  Wide w = static_cast<std::uint64_t>(m >> 64);
  w <<= 64;
  w += static_cast<std::uint64_t>(m);
  return neg ? Wide(-w) : w;
}

Wide pow10(unsigned n) {
  Wide p = 1;
  for (unsigned i = 0; i < n; ++i) p *= 10;
  return p;
}

// a / b rounded half to even. b != 0.
Wide div_half_even(const Wide& a, const Wide& b) {
  Wide q = a / b;  // truncates toward zero
  const Wide r = a % b;
  if (r == 0) return q;
  const Wide twice = mp::abs(r) * 2;
  const Wide ab = mp::abs(b);
  const bool away = twice > ab || (twice == ab && q % 2 != 0);
  if (away) q += ((a < 0) != (b < 0)) ? -1 : 1;
  return q;
}

// `v` at scale `from` as a mantissa at scale `to`, half to even when digits are dropped.
Wide rescale(const Wide& v, unsigned from, unsigned to) {
  if (to >= from) return v * pow10(to - from);
  return div_half_even(v, pow10(from - to));
}

// Back to a field's mantissa, or the error naming the field and the limit.
Expected<int128> narrow(const Wide& v, const char* field) {
  static const Wide limit = wide(kDecimalLimit);
  if (v >= limit || v <= -limit) {
    return fail("fill: the result for field '" + std::string(field) + "' (" + v.str() +
                " in base units) reaches 10^38, the decimal limit; the fill is refused");
  }
  const Wide m = mp::abs(v);
  const auto hi = static_cast<std::uint64_t>(m >> 64);
  const auto lo = static_cast<std::uint64_t>(m & Wide(UINT64_MAX));
  const int128 r = static_cast<int128>((static_cast<unsigned __int128>(hi) << 64) | lo);
  return v < 0 ? -r : r;
}

Expected<std::uint8_t> find_decimal(const NamespaceSpec& spec, const char* name, const char* op) {
  for (std::size_t i = 0; i < spec.fields.size(); ++i) {
    if (spec.fields[i].name != name) continue;
    if (spec.fields[i].type != FieldType::decimal) {
      return fail("field '" + std::string(name) + "' of namespace '" + spec.name + "' is " +
                  std::string(to_string(spec.fields[i].type)) + "; " + op +
                  " needs it to be a decimal");
    }
    return static_cast<std::uint8_t>(i);
  }
  return fail("namespace '" + spec.name + "' has no field '" + name + "', which " + op +
              " needs (fill needs qty, avg_price, cost_basis, realized_pnl and fees; mark needs "
              "qty, avg_price, mark_price and unrealized_pnl)");
}

std::optional<std::uint8_t> find_optional(const NamespaceSpec& spec, const char* name) {
  for (std::size_t i = 0; i < spec.fields.size(); ++i)
    if (spec.fields[i].name == name && spec.fields[i].type == FieldType::decimal)
      return static_cast<std::uint8_t>(i);
  return std::nullopt;
}

}  // namespace

Expected<TradingFields> TradingFields::for_fill(const NamespaceSpec& spec) {
  TradingFields f;
  for (std::size_t i = 0; i < spec.fields.size() && i < kMaxFields; ++i)
    f.scale[i] = spec.fields[i].scale;
  const char* op = "fill";
  auto qty = find_decimal(spec, "qty", op);
  if (!qty) return fail(qty.error());
  auto avg = find_decimal(spec, "avg_price", op);
  if (!avg) return fail(avg.error());
  auto cb = find_decimal(spec, "cost_basis", op);
  if (!cb) return fail(cb.error());
  auto rp = find_decimal(spec, "realized_pnl", op);
  if (!rp) return fail(rp.error());
  auto fees = find_decimal(spec, "fees", op);
  if (!fees) return fail(fees.error());
  f.qty = *qty;
  f.avg_price = *avg;
  f.cost_basis = *cb;
  f.realized_pnl = *rp;
  f.fees = *fees;
  f.mark_price = find_optional(spec, "mark_price");
  f.unrealized_pnl = find_optional(spec, "unrealized_pnl");
  if (!f.mark_price || !f.unrealized_pnl) f.mark_price.reset(), f.unrealized_pnl.reset();
  return f;
}

Expected<TradingFields> TradingFields::for_mark(const NamespaceSpec& spec) {
  TradingFields f;
  for (std::size_t i = 0; i < spec.fields.size() && i < kMaxFields; ++i)
    f.scale[i] = spec.fields[i].scale;
  const char* op = "mark";
  auto qty = find_decimal(spec, "qty", op);
  if (!qty) return fail(qty.error());
  auto avg = find_decimal(spec, "avg_price", op);
  if (!avg) return fail(avg.error());
  auto mp_ = find_decimal(spec, "mark_price", op);
  if (!mp_) return fail(mp_.error());
  auto up = find_decimal(spec, "unrealized_pnl", op);
  if (!up) return fail(up.error());
  f.qty = *qty;
  f.avg_price = *avg;
  f.mark_price = *mp_;
  f.unrealized_pnl = *up;
  // The fill-only fields are not needed by mark: leave them pointing at qty, never used. The
  // cost is used when the namespace has it (unrealized P&L from the cost, else from avg_price).
  f.realized_pnl = f.fees = *qty;
  const auto cost = find_optional(spec, "cost_basis");
  f.has_cost_field = cost.has_value();
  f.cost_basis = cost.value_or(*qty);
  return f;
}

namespace {

// An exact decimal: a mantissa and its scale.
struct Exact {
  Wide m;
  unsigned scale;
};

// a - b, exact, at the larger of the two scales (scaling up loses nothing).
Exact minus(const Exact& a, const Exact& b) {
  const unsigned s = std::max(a.scale, b.scale);
  return {rescale(a.m, a.scale, s) - rescale(b.m, b.scale, s), s};
}

// [x]_f: x rounded once, half to even, to field f's scale.
Wide round_to(const Exact& x, unsigned field_scale) {
  return rescale(x.m, x.scale, field_scale);
}

int sign(const Wide& v) {
  return v > 0 ? 1 : (v < 0 ? -1 : 0);
}

// U = [Q x M - s x C]_U: the open quantity's P&L at the mark, from its cost. A position that
// has no cost (a namespace without the field, or a position upserted with qty and avg_price
// only) is valued from its average instead: [Q x (M - A)]_U.
Wide unrealized(const TradingFields& f, const Book& b, const Wide& qty, const Wide& cost,
                const Wide& avg, const Wide& mark) {
  const unsigned qs = f.scale[f.qty], ms = f.scale[*f.mark_price];
  if (!f.has_cost_field || !b.has_cost) {
    const Exact diff = minus({mark, ms}, {avg, f.scale[f.avg_price]});
    return round_to({qty * diff.m, qs + diff.scale}, f.scale[*f.unrealized_pnl]);
  }
  const Exact value{qty * mark, qs + ms};
  const Exact signed_cost{sign(qty) * cost, f.scale[f.cost_basis]};
  return round_to(minus(value, signed_cost), f.scale[*f.unrealized_pnl]);
}

}  // namespace

Expected<Book> apply_fill(const TradingFields& f, const Book& before, const FillInput& in) {
  if (in.qty <= 0) return fail("fill: qty must be greater than 0 (the side says buy or sell)");
  if (in.price < 0) return fail("fill: price must not be negative");
  try {
    // The names of the header's formulas: Q, A, C, R before; q, p the fill; d its side.
    const unsigned qs = f.scale[f.qty], as = f.scale[f.avg_price], cs = f.scale[f.cost_basis],
                   rs = f.scale[f.realized_pnl];
    const Wide Q = wide(before.qty), A = wide(before.avg_price);
    // A position upserted with qty and avg_price but no cost_basis cost |Q| x A.
    const Wide C =
        before.has_cost ? wide(before.cost_basis) : round_to({mp::abs(Q) * A, qs + as}, cs);
    const Wide q = wide(in.qty), p = wide(in.price);
    const int d = in.side == Side::buy ? 1 : -1, s = sign(Q);
    const Wide Q1 = Q + d * q;
    const unsigned qp_scale = qs + as;  // of q x p and |Q| x A: exact products
    Wide A1, C1, R1 = wide(before.realized_pnl);

    if (s == 0 || s == d) {  // opening: re-average from exact values, add the fill's cost
      A1 = div_half_even(mp::abs(Q) * A + q * p, mp::abs(Q1));
      C1 = C + round_to({q * p, qp_scale}, cs);  // the fill's cash, rounded once
    } else {
      const Wide closed = q < mp::abs(Q) ? q : Wide(mp::abs(Q));
      // The cost of what stays open: C scaled by the part of |Q| that stays (0 when flat or
      // crossing); what was closed cost C - C_left, and realized is proceeds minus that cost.
      const Wide C_left = q < mp::abs(Q) ? div_half_even(C * mp::abs(Q1), mp::abs(Q)) : Wide(0);
      // The cash of the closed part, rounded once where it lands ([q x p]_C), less what it
      // cost: both on C's grid, so R moves by exactly what C gives up (FI4) when R's scale is
      // at least C's.
      const Wide cash = round_to({closed * p, qp_scale}, cs);
      R1 += round_to({s * (cash - (C - C_left)), cs}, rs);
      if (Q1 == 0) {
        A1 = 0;
        C1 = 0;
      } else if (sign(Q1) == s) {  // reduced: the average stays
        A1 = A;
        C1 = C_left;
      } else {  // crossed zero: the rest opens the other side at the fill price
        A1 = p;
        C1 = round_to({mp::abs(Q1) * p, qp_scale}, cs);
      }
    }

    Book out = before;
    out.has_cost = true;  // a fill always writes cost_basis
    auto set = [](int128& dst, Expected<int128> v) -> std::string {
      if (!v) return v.error();
      dst = *v;
      return {};
    };
    std::string err;
    if (err = set(out.qty, narrow(Q1, "qty")); !err.empty()) return fail(err);
    if (err = set(out.avg_price, narrow(A1, "avg_price")); !err.empty()) return fail(err);
    if (err = set(out.cost_basis, narrow(C1, "cost_basis")); !err.empty()) return fail(err);
    if (err = set(out.realized_pnl, narrow(R1, "realized_pnl")); !err.empty()) return fail(err);
    if (err = set(out.fees, narrow(wide(before.fees) + wide(in.fee), "fees")); !err.empty())
      return fail(err);
    if (before.has_mark && f.mark_price) {
      if (err = set(
              out.unrealized_pnl,
              narrow(unrealized(f, out, Q1, C1, A1, wide(before.mark_price)), "unrealized_pnl"));
          !err.empty())
        return fail(err);
    }
    return out;
  } catch (const std::overflow_error&) {
    return fail(
        "fill: an intermediate product went beyond 256 bits (quantities and prices this "
        "large cannot be held exactly); the fill is refused");
  } catch (const std::exception& e) {  // nothing else is expected; a refusal, never a crash
    return fail(std::string("fill: arithmetic failed (") + e.what() + "); the fill is refused");
  }
}

Expected<Book> apply_mark(const TradingFields& f, const Book& before, int128 price) {
  if (price < 0) return fail("mark: price must not be negative");
  try {
    Book out = before;
    out.mark_price = price;
    out.has_mark = true;
    auto u = narrow(unrealized(f, before, wide(before.qty), wide(before.cost_basis),
                               wide(before.avg_price), wide(price)),
                    "unrealized_pnl");
    if (!u) return fail(u.error());
    out.unrealized_pnl = *u;
    return out;
  } catch (const std::overflow_error&) {
    return fail("mark: an intermediate product went beyond 256 bits; the mark is refused");
  } catch (const std::exception& e) {
    return fail(std::string("mark: arithmetic failed (") + e.what() + "); the mark is refused");
  }
}

}  // namespace poscache::ingest
