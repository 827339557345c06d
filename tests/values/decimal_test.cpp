#include "poscache/decimal.hpp"

#include <gtest/gtest.h>

#include <random>

using poscache::format_decimal;
using poscache::int128;
using poscache::parse_decimal;
using poscache::parse_int64;

TEST(DecimalTest, ParsesAtTheFieldScale) {
  EXPECT_EQ(*parse_decimal("1.5", 2), 150);
  EXPECT_EQ(*parse_decimal("-0.05", 3), -50);
  EXPECT_EQ(*parse_decimal("+7", 0), 7);
  EXPECT_EQ(*parse_decimal("0", 18), 0);
  EXPECT_EQ(*parse_decimal("000123.4500", 4), 1234500);
}

TEST(DecimalTest, FormatsExactlyScaleDigits) {
  EXPECT_EQ(format_decimal(150, 2), "1.50");
  EXPECT_EQ(format_decimal(-50, 3), "-0.050");
  EXPECT_EQ(format_decimal(7, 0), "7");
  EXPECT_EQ(format_decimal(0, 18), "0.000000000000000000");
  EXPECT_EQ(format_decimal(1, 18), "0.000000000000000001");
}

TEST(DecimalTest, EighteenDecimalTokenAmountsUpToATrillionTokensAreExact) {
  const std::string text = "1000000000000.123456789012345678";  // 10^12 tokens, 18 decimals
  const auto v = parse_decimal(text, 18);
  ASSERT_TRUE(v) << v.error();
  EXPECT_EQ(format_decimal(*v, 18), text);
  const std::string max = "99999999999999999999.999999999999999999";  // 38 digits
  EXPECT_EQ(format_decimal(*parse_decimal(max, 18), 18), max);
  EXPECT_EQ(format_decimal(*parse_decimal("-" + max, 18), 18), "-" + max);
}

TEST(DecimalTest, RoundTripsRandomValuesAtEveryScale) {
  std::mt19937_64 rng(42);
  for (unsigned scale = 0; scale <= poscache::kMaxScale; ++scale) {
    for (int i = 0; i < 2000; ++i) {
      int128 m = (static_cast<int128>(rng() >> 1) << 62) ^ static_cast<int128>(rng());
      m %= poscache::kDecimalLimit;
      if (rng() & 1) m = -m;
      const std::string s = format_decimal(m, scale);
      const auto back = parse_decimal(s, scale);
      ASSERT_TRUE(back) << s << ": " << back.error();
      ASSERT_TRUE(*back == m) << s;
    }
  }
}

TEST(DecimalTest, RefusesTooManyFractionalDigitsInsteadOfRounding) {
  const auto v = parse_decimal("1.234", 2);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().find("'1.234'"), std::string::npos) << v.error();
  EXPECT_NE(v.error().find("scale is 2"), std::string::npos) << v.error();
}

// Zeros beyond the scale are exact: taken. A non-zero digit there would need rounding: refused,
// however many zeros come before it.
TEST(DecimalTest, TakesZerosBeyondTheScaleAndRefusesAnyOtherDigitThere) {
  EXPECT_EQ(*parse_decimal("1.50000", 2), 150);
  EXPECT_EQ(*parse_decimal("-1.0000000000000000000", 18), -1'000'000'000'000'000'000);
  EXPECT_EQ(*parse_decimal("7.000", 0), 7);
  EXPECT_FALSE(parse_decimal("1.5000001", 2));
  EXPECT_FALSE(parse_decimal("0.0000000000000000001", 18));
  EXPECT_FALSE(parse_decimal("7.", 0));
}

TEST(DecimalTest, RefusesOverflowNamingTheLimit) {
  const auto v = parse_decimal("100000000000000000000", 18);  // 10^20 at scale 18 = 10^38
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().find("overflows"), std::string::npos) << v.error();
  EXPECT_FALSE(parse_decimal(std::string(39, '9'), 0));
  EXPECT_TRUE(parse_decimal(std::string(38, '9'), 0));
}

TEST(DecimalTest, RefusesMalformedTextNamingIt) {
  for (const char* bad : {"", "-", ".", "1.", ".5", "1..2", "1.2.3", "1e5", "0x10", "1,000", " 1",
                          "1 ", "NaN", "inf", "--1", "+-1"}) {
    const auto v = parse_decimal(bad, 4);
    EXPECT_FALSE(v) << "accepted '" << bad << "'";
    if (!v) {
      EXPECT_NE(v.error().find("decimal"), std::string::npos);
    }
  }
  EXPECT_FALSE(parse_decimal("1", poscache::kMaxScale + 1));
}

TEST(DecimalTest, ParsesInt64WithRangeErrors) {
  EXPECT_EQ(*parse_int64("-42"), -42);
  EXPECT_EQ(*parse_int64("9223372036854775807"), INT64_MAX);
  EXPECT_FALSE(parse_int64("9223372036854775808"));
  EXPECT_FALSE(parse_int64("12a"));
  EXPECT_FALSE(parse_int64(""));
  EXPECT_NE(parse_int64("9223372036854775808").error().find("64-bit range"), std::string::npos);
}

// format_decimal writes 9-digit parts two digits at a time, peeling 18 digits with a 128-bit
// division above 2^64: checked against the digit-by-digit method at the part and peel edges
// (10^9, 10^18, 2^64, 10^19, 10^36, 10^38 - 1), at every scale, and on random values.
TEST(DecimalTest, FormatsLikeTheDigitByDigitMethodAtChunkEdgesAndRandomValues) {
  auto reference = [](int128 m, unsigned scale) {
    std::string digits;
    const bool neg = m < 0;
    unsigned __int128 v =
        neg ? static_cast<unsigned __int128>(-(m + 1)) + 1 : static_cast<unsigned __int128>(m);
    do {
      digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
      v /= 10;
    } while (v != 0);
    while (digits.size() <= scale) digits.insert(digits.begin(), '0');
    if (scale > 0) digits.insert(digits.end() - scale, '.');
    return (neg ? "-" : "") + digits;
  };
  const int128 two64 = static_cast<int128>(1) << 64;
  int128 p19 = 1;
  for (int i = 0; i < 19; ++i) p19 *= 10;
  const int128 max38 = p19 * p19 - 1;  // 10^38 - 1
  std::vector<int128> values = {0,
                                1,
                                9,
                                10,
                                two64 - 1,
                                two64,
                                two64 + 1,
                                p19 - 1,
                                p19,
                                p19 + 1,
                                p19 * p19 - 1,
                                p19 * p19,
                                max38,
                                p19 * 7,
                                two64 * 3 + 5,
                                999'999'999,
                                1'000'000'000,
                                1'000'000'001,
                                p19 / 10 - 1,
                                p19 / 10,
                                p19 / 10 + 1,
                                p19 * p19 / 100 - 1,
                                p19 * p19 / 100,
                                (p19 / 10) * (p19 / 10) * 99 + 1};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const int128 v = static_cast<int128>(((static_cast<unsigned __int128>(rng()) << 64) | rng()) %
                                         static_cast<unsigned __int128>(max38 + 1));
    values.push_back(v >> (rng() % 127));
  }
  for (const int128 v : values) {
    for (unsigned scale = 0; scale <= 37; ++scale) {
      ASSERT_EQ(format_decimal(v, scale), reference(v, scale));
      ASSERT_EQ(format_decimal(-v, scale), reference(-v, scale));
    }
  }
}
