// The average-cost arithmetic on its own (writer/ingest/fill_math.hpp): the worked
// example, each branch (add, reduce, close, cross), rounding half to even, and refusals.
#include "writer/ingest/fill_math.hpp"

#include <gtest/gtest.h>

namespace poscache::ingest {
namespace {

int128 d(const char* text) {
  auto v = parse_decimal(text, 18);
  EXPECT_TRUE(v) << text;
  return v ? *v : 0;
}

std::string s(int128 m) {
  return format_decimal(m, 18);
}

TradingFields trading() {
  return *TradingFields::for_fill(preset_trading("spot"));
}

Book fill(const Book& b, Side side, const char* qty, const char* price, const char* fee = "0") {
  auto r = apply_fill(trading(), b, FillInput{side, d(qty), d(price), d(fee)});
  EXPECT_TRUE(r) << (r ? "" : r.error());
  return r ? *r : b;
}

TEST(FillMathTest, TheWorkedExampleHolds) {
  Book b;
  b = fill(b, Side::buy, "10", "100");
  b = fill(b, Side::buy, "10", "110");
  EXPECT_EQ(s(b.qty), s(d("20")));
  EXPECT_EQ(s(b.avg_price), s(d("105")));
  b = fill(b, Side::sell, "5", "120");
  EXPECT_EQ(s(b.qty), s(d("15")));
  EXPECT_EQ(s(b.avg_price), s(d("105")));
  EXPECT_EQ(s(b.realized_pnl), s(d("75")));
  EXPECT_EQ(s(b.cost_basis), s(d("1575")));
  b = fill(b, Side::sell, "20", "100");  // closes 15 at -5 each (-75), opens 5 short at 100
  EXPECT_EQ(s(b.qty), s(d("-5")));
  EXPECT_EQ(s(b.avg_price), s(d("100")));
  EXPECT_EQ(s(b.realized_pnl), s(d("0")));
  EXPECT_EQ(s(b.cost_basis), s(d("500")));
}

TEST(FillMathTest, AShortRealizesTheMirrorAndAFlatPositionHasNoAverage) {
  Book b = fill(Book{}, Side::sell, "4", "50");
  EXPECT_EQ(s(b.qty), s(d("-4")));
  EXPECT_EQ(s(b.avg_price), s(d("50")));
  b = fill(b, Side::buy, "1", "45");  // a short gains when the price falls
  EXPECT_EQ(s(b.realized_pnl), s(d("5")));
  b = fill(b, Side::buy, "3", "60");  // closes the rest: 3 x (50 - 60) = -30
  EXPECT_EQ(s(b.qty), s(d("0")));
  EXPECT_EQ(s(b.avg_price), "0.000000000000000000");
  EXPECT_EQ(s(b.cost_basis), "0.000000000000000000");
  EXPECT_EQ(s(b.realized_pnl), s(d("-25")));
}

TEST(FillMathTest, FeesAccumulateApartFromRealizedPnl) {
  Book b = fill(Book{}, Side::buy, "1", "100", "0.25");
  b = fill(b, Side::sell, "1", "110", "0.30");
  EXPECT_EQ(s(b.fees), s(d("0.55")));
  EXPECT_EQ(s(b.realized_pnl), s(d("10")));
}

TEST(FillMathTest, TheAverageIsRoundedHalfToEvenAtTheFieldsScale) {
  // 1 @ 1, then 2 @ 0.000000000000000001: cost 1.000000000000000002 over 3 = 0.333...334
  Book b = fill(Book{}, Side::buy, "1", "1");
  b = fill(b, Side::buy, "2", "0.000000000000000001");
  EXPECT_EQ(s(b.avg_price), "0.333333333333333334");
  // A scale-0 namespace: an exact half rounds to the even neighbour.
  NamespaceSpec coarse{"coarse",
                       {{"qty", FieldType::decimal, 0},
                        {"avg_price", FieldType::decimal, 0},
                        {"cost_basis", FieldType::decimal, 0},
                        {"realized_pnl", FieldType::decimal, 0},
                        {"fees", FieldType::decimal, 0}}};
  const auto tf = *TradingFields::for_fill(coarse);
  Book c = *apply_fill(tf, Book{}, {Side::buy, 1, 1, 0});
  c = *apply_fill(tf, c, {Side::buy, 1, 2, 0});  // 3 / 2 = 1.5 -> 2
  EXPECT_EQ(static_cast<long>(c.avg_price), 2);
  Book e = *apply_fill(tf, Book{}, {Side::buy, 1, 2, 0});
  e = *apply_fill(tf, e, {Side::buy, 1, 3, 0});  // 5 / 2 = 2.5 -> 2
  EXPECT_EQ(static_cast<long>(e.avg_price), 2);
  Book f = *apply_fill(tf, Book{}, {Side::sell, 1, 2, 0});
  f = *apply_fill(tf, f, {Side::sell, 1, 3, 0});  // a short's average is positive as well
  EXPECT_EQ(static_cast<long>(f.avg_price), 2);
}

TEST(FillMathTest, AMarkedPositionKeepsItsUnrealizedPnlAcrossFills) {
  const auto tf = *TradingFields::for_mark(preset_trading("spot"));
  Book b = fill(Book{}, Side::buy, "2", "100");
  b = *apply_mark(tf, b, d("130"));
  EXPECT_EQ(s(b.unrealized_pnl), s(d("60")));
  b = fill(b, Side::buy, "2", "120");  // avg 110, mark still 130: 4 x 20
  EXPECT_EQ(s(b.unrealized_pnl), s(d("80")));
  b = fill(b, Side::sell, "6", "125");  // short 2 at 125, mark 130: -2 x 5
  EXPECT_EQ(s(b.unrealized_pnl), s(d("-10")));
}

// The table: the average came from a cost basis already rounded to 18 places.
TEST(FillMathTest, TheAverageAfterOneFillIsThatFillsPriceEvenForDust) {
  Book a = fill(Book{}, Side::buy, "0.000000000000000001", "123.456");
  EXPECT_EQ(s(a.avg_price), "123.456000000000000000");
  EXPECT_EQ(s(a.cost_basis), "0.000000000000000123");  // [1.23456e-16] at scale 18
  Book b = fill(Book{}, Side::buy, "0.5", "0.000000000000000001");
  EXPECT_EQ(s(b.avg_price), "0.000000000000000001");  // not flat, so not 0
  Book c = fill(Book{}, Side::buy, "0.001", "0.000000000000001234");
  EXPECT_EQ(s(c.avg_price), "0.000000000000001234");
  // Dust added to dust re-averages from exact values: (1 x 123.456 + 1 x 123.458) / 2.
  a = fill(a, Side::buy, "0.000000000000000001", "123.458");
  EXPECT_EQ(s(a.avg_price), "123.457000000000000000");
  // A short opened by one fill as well.
  Book d = fill(Book{}, Side::sell, "0.000000000000000003", "7.000000000000000001");
  EXPECT_EQ(s(d.avg_price), "7.000000000000000001");
}

// Unrealized P&L from the cost, not from a rounded average times the quantity.
TEST(FillMathTest, UnrealizedPnlIsTheMarkValueLessTheCost) {
  const auto tf = *TradingFields::for_mark(preset_trading("spot"));
  Book b = fill(Book{}, Side::buy, "10", "100");
  b = fill(b, Side::buy, "20", "100.25");  // cost 3005, avg 100.1666...667
  EXPECT_EQ(s(b.avg_price), "100.166666666666666667");
  EXPECT_EQ(s(b.cost_basis), "3005.000000000000000000");
  b = *apply_mark(tf, b, d("101.25"));
  EXPECT_EQ(s(b.unrealized_pnl), "32.500000000000000000");  // 30 x 101.25 - 3005
  // A fill after the mark keeps it exact too: sell 10 @ 102 leaves cost 3005 x 20/30.
  b = fill(b, Side::sell, "10", "102");
  EXPECT_EQ(s(b.cost_basis), "2003.333333333333333333");
  EXPECT_EQ(s(b.realized_pnl), "18.333333333333333333");    // 1020 - (3005 - 2003.33...)
  EXPECT_EQ(s(b.unrealized_pnl), "21.666666666666666667");  // 20 x 101.25 - 2003.33...
  // A short: its P&L is the cost received less the value at the mark.
  Book sh = fill(Book{}, Side::sell, "3", "50.1");
  sh = *apply_mark(tf, sh, d("49"));
  EXPECT_EQ(s(sh.unrealized_pnl), "3.300000000000000000");
}

// FI4: what the fills paid and received is exactly realized P&L less the open cost; no rounding
// moves money between the two.
TEST(FillMathTest, RealizedLessOpenCostIsTheFillsCashExactly) {
  Book b;
  int128 cash = 0;  // -sum of d x [q x p], at scale 18: whole quantities keep it exact
  auto step = [&](Side side, int units, const char* price) {
    b = fill(b, side, std::to_string(units).c_str(), price);
    cash -= (side == Side::buy ? 1 : -1) * units * d(price);
  };
  step(Side::buy, 3, "101");
  step(Side::buy, 7, "99.5");
  step(Side::sell, 4, "103.25");  // 6 of 10 stay: cost 999.5 x 0.6 = 599.7
  step(Side::sell, 1, "97");
  step(Side::sell, 9, "100");  // crosses: closes 5, opens 4 short at 100
  step(Side::buy, 1, "98");
  const int128 s_ = b.qty > 0 ? 1 : (b.qty < 0 ? -1 : 0);
  EXPECT_EQ(s(b.realized_pnl - s_ * b.cost_basis), s(cash));
}

// A position a producer upserted with qty and avg_price only holds no cost_basis: a fill takes
// its cost as |qty| x avg, a mark values it from the average.
TEST(FillMathTest, APositionWithoutACostIsValuedFromItsAverage) {
  const auto tm = *TradingFields::for_mark(preset_trading("spot"));
  Book b;
  b.qty = d("4");
  b.avg_price = d("25");
  b.has_cost = false;
  Book m = *apply_mark(tm, b, d("26.5"));
  EXPECT_EQ(s(m.unrealized_pnl), s(d("6")));
  Book f = fill(b, Side::sell, "1", "30");
  EXPECT_EQ(s(f.realized_pnl), s(d("5")));
  EXPECT_EQ(s(f.cost_basis), s(d("75")));
  EXPECT_TRUE(f.has_cost);
  // A namespace without cost_basis can still be marked.
  NamespaceSpec broker{"broker",
                       {{"qty", FieldType::decimal, 4},
                        {"avg_price", FieldType::decimal, 4},
                        {"mark_price", FieldType::decimal, 4},
                        {"unrealized_pnl", FieldType::decimal, 4}}};
  const auto tb = TradingFields::for_mark(broker);
  ASSERT_TRUE(tb) << tb.error();
  Book k;
  k.qty = 20'000;        // 2
  k.avg_price = 10'001;  // 1.0001
  k.has_cost = false;
  EXPECT_EQ(static_cast<long>(apply_mark(*tb, k, 10'500)->unrealized_pnl), 998);  // 2 x 0.0499
}

TEST(FillMathTest, AResultBeyondTheDecimalLimitRefusesTheFillNamingTheField) {
  Book b = fill(Book{}, Side::buy, "10000000000000000000", "1");  // 10^19 tokens
  auto r = apply_fill(trading(), b, {Side::buy, d("1"), d("99999999999999999999"), 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("'cost_basis'"), std::string::npos) << r.error();
  auto z = apply_fill(trading(), b, {Side::buy, 0, d("1"), 0});
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().find("qty must be greater than 0"), std::string::npos);
}

TEST(FillMathTest, ANamespaceWithoutTheTradingFieldsIsRefusedNamingTheField) {
  auto f = TradingFields::for_fill(preset_lending("moonwell"));
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().find("'qty'"), std::string::npos) << f.error();
  EXPECT_NE(f.error().find("'moonwell'"), std::string::npos) << f.error();
  auto q = TradingFields::for_mark(preset_quote("marks"));
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().find("'qty'"), std::string::npos) << q.error();
  NamespaceSpec odd{"odd", {{"qty", FieldType::int64, 0}}};
  auto o = TradingFields::for_fill(odd);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().find("needs it to be a decimal"), std::string::npos) << o.error();
}

}  // namespace
}  // namespace poscache::ingest
