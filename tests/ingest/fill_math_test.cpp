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
