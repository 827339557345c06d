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
  // The fill-only fields are not needed by mark: leave them pointing at qty, never used.
  f.cost_basis = f.realized_pnl = f.fees = *qty;
  return f;
}

namespace {

// unrealized = qty x (mark - avg) at the unrealized_pnl field's scale.
Wide unrealized(const TradingFields& f, const Wide& qty, const Wide& avg, const Wide& mark) {
  const unsigned qs = f.scale[f.qty], as = f.scale[f.avg_price], ms = f.scale[*f.mark_price];
  const unsigned ps = std::max(as, ms);
  const Wide diff = rescale(mark, ms, ps) - rescale(avg, as, ps);  // exact: scaling up
  return rescale(qty * diff, qs + ps, f.scale[*f.unrealized_pnl]);
}

}  // namespace

Expected<Book> apply_fill(const TradingFields& f, const Book& before, const FillInput& in) {
  if (in.qty <= 0) return fail("fill: qty must be greater than 0 (the side says buy or sell)");
  if (in.price < 0) return fail("fill: price must not be negative");
  try {
    const unsigned qs = f.scale[f.qty], as = f.scale[f.avg_price], cbs = f.scale[f.cost_basis],
                   rs = f.scale[f.realized_pnl];
    const Wide q0 = wide(before.qty), a0 = wide(before.avg_price), cb0 = wide(before.cost_basis);
    const Wide s = in.side == Side::buy ? wide(in.qty) : Wide(-wide(in.qty));  // signed fill
    const Wide p = wide(in.price);
    const Wide q1 = q0 + s;
    Wide a1, cb1, realized = wide(before.realized_pnl);

    const bool adding = q0 == 0 || (q0 > 0) == (s > 0);
    if (adding) {
      // cost_basis += |s| x p  (scale qs + as -> cbs); avg = cost_basis / |q1| (-> as)
      cb1 = cb0 + rescale(mp::abs(s) * p, qs + as, cbs);
      // avg mantissa = cb1 * 10^(qs + as - cbs) / |q1|, one rounding.
      const int e = static_cast<int>(qs + as) - static_cast<int>(cbs);
      a1 = e >= 0 ? div_half_even(cb1 * pow10(static_cast<unsigned>(e)), mp::abs(q1))
                  : div_half_even(cb1, mp::abs(q1) * pow10(static_cast<unsigned>(-e)));
    } else {
      const Wide as_ = mp::abs(s), aq_ = mp::abs(q0);
      const Wide closed = as_ < aq_ ? as_ : aq_;
      // realized += closed x (p - avg) for a long, closed x (avg - p) for a short
      const Wide per_unit = q0 > 0 ? Wide(p - a0) : Wide(a0 - p);  // both at scale as
      realized += rescale(closed * per_unit, qs + as, rs);
      if (q1 == 0) {
        a1 = 0;
        cb1 = 0;
      } else if ((q1 > 0) == (q0 > 0)) {  // reduced, same side: the average stays
        a1 = a0;
        cb1 = rescale(mp::abs(q1) * a0, qs + as, cbs);
      } else {  // crossed zero: the rest opens the other side at the fill price
        a1 = p;
        cb1 = rescale(mp::abs(q1) * p, qs + as, cbs);
      }
    }

    Book out = before;
    auto set = [](int128& dst, Expected<int128> v) -> std::string {
      if (!v) return v.error();
      dst = *v;
      return {};
    };
    std::string err;
    if (err = set(out.qty, narrow(q1, "qty")); !err.empty()) return fail(err);
    if (err = set(out.avg_price, narrow(a1, "avg_price")); !err.empty()) return fail(err);
    if (err = set(out.cost_basis, narrow(cb1, "cost_basis")); !err.empty()) return fail(err);
    if (err = set(out.realized_pnl, narrow(realized, "realized_pnl")); !err.empty())
      return fail(err);
    if (err = set(out.fees, narrow(wide(before.fees) + wide(in.fee), "fees")); !err.empty())
      return fail(err);
    if (before.has_mark && f.mark_price) {
      if (err = set(out.unrealized_pnl,
                    narrow(unrealized(f, q1, a1, wide(before.mark_price)), "unrealized_pnl"));
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
    auto u = narrow(unrealized(f, wide(before.qty), wide(before.avg_price), wide(price)),
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
