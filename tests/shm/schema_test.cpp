#include "poscache/schema.hpp"

#include <gtest/gtest.h>

using namespace poscache;

TEST(SchemaTest, PresetsAreValid) {
  for (const char* p : {"trading", "lending", "quote"}) {
    auto spec = preset(p, "ns1");
    ASSERT_TRUE(spec) << spec.error();
    EXPECT_TRUE(validate(*spec)) << p;
  }
  EXPECT_FALSE(preset("futures", "x"));
}

TEST(SchemaTest, LendingPresetKeepsBaseUnitsAndBlocks) {
  const auto l = preset_lending("aave");
  ASSERT_EQ(l.fields.size(), 6u);
  EXPECT_EQ(l.fields[0].name, "collateral_amount");
  EXPECT_EQ(l.fields[0].scale, 0);
  EXPECT_EQ(l.fields[4].type, FieldType::int64);
  EXPECT_EQ(l.fields[5].name, "blocks_unhealthy");
}

TEST(SchemaTest, KeyPartErrorsNameThePartTheValueAndTheLimit) {
  const auto a = validate_account(std::string(65, 'a'));
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("account"), std::string::npos);
  EXPECT_NE(a.error().find("65 characters"), std::string::npos);
  EXPECT_NE(a.error().find("limit is 64"), std::string::npos);
  const auto i = validate_instrument("BTC:USD");
  ASSERT_FALSE(i);
  EXPECT_NE(i.error().find("instrument 'BTC:USD' has ':'"), std::string::npos) << i.error();
  EXPECT_FALSE(validate_instrument(""));
  EXPECT_TRUE(validate_instrument("BTC/USD"));
  EXPECT_FALSE(validate_account("a/b"));  // '/' only in instruments
  EXPECT_FALSE(validate_account("a*"));   // glob characters never in keys
  EXPECT_FALSE(validate_namespace_name("Spot"));
  EXPECT_FALSE(validate_namespace_name("1spot"));
  EXPECT_TRUE(validate_namespace_name("spot_2"));
  EXPECT_FALSE(validate_account(std::string("a\0b", 3)));
}

TEST(SchemaTest, RejectsBadSchemas) {
  NamespaceSpec s{"x", {}, {}, {}};
  EXPECT_FALSE(validate(s));
  s.fields = {{"a", FieldType::decimal, 2}, {"a", FieldType::int64, 0}};
  EXPECT_NE(validate(s).error().find("declared twice"), std::string::npos);
  s.fields = {{"a", FieldType::int64, 3}};
  EXPECT_FALSE(validate(s));
  s.fields = {{"a", FieldType::decimal, 31}};
  EXPECT_FALSE(validate(s));
  s.fields.assign(17, {"f", FieldType::int64, 0});
  EXPECT_NE(validate(s).error().find("limit is 16"), std::string::npos);
  s = preset_quote("q");
  s.stale_after = std::chrono::seconds(100);
  EXPECT_NE(validate(s).error().find("expire before"), std::string::npos);
}
