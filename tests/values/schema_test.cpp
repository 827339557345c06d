#include "poscache/schema.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "poscache/decimal.hpp"

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
  ASSERT_EQ(l.fields.size(), 8u);
  EXPECT_EQ(l.fields[0].name, "collateral_amount");
  EXPECT_EQ(l.fields[0].scale, 0);
  EXPECT_EQ(l.fields[4].type, FieldType::int64);
  EXPECT_EQ(l.fields[5].name, "blocks_unhealthy");
  // The assets' addresses: text of up to 48 bytes, three value slots each, after the numbers.
  EXPECT_EQ(l.fields[6].name, "collateral_asset");
  EXPECT_EQ(l.fields[6].type, FieldType::text);
  EXPECT_EQ(l.fields[6].length, 48);
  EXPECT_EQ(l.fields[7].name, "debt_asset");
  EXPECT_EQ(field_slot(l.fields, 6), 6u);
  EXPECT_EQ(field_slot(l.fields, 7), 9u);
  EXPECT_EQ(value_slots(l.fields), 12u);
  EXPECT_TRUE(validate(l));
}

TEST(SchemaTest, TextFieldsAreCheckedWhereTheyAreDeclaredAndWhereTheyAreGiven) {
  auto schema_error = [](std::vector<FieldSpec> fields) {
    auto r = validate(NamespaceSpec{"orders", std::move(fields), {}, {}});
    return r ? std::string() : r.error();
  };
  const FieldSpec qty{"qty", FieldType::decimal, 18, 0};
  EXPECT_NE(schema_error({qty, {"status", FieldType::text, 0, 0}})
                .find("text field 'status' has length 0: it must be 1 to 128 bytes"),
            std::string::npos);
  EXPECT_NE(schema_error({qty, {"status", FieldType::text, 0, 129}}).find("has length 129"),
            std::string::npos);
  EXPECT_NE(schema_error({{"status", FieldType::text, 0, 16}, qty})
                .find("field 'qty' (decimal) follows text field 'status': text fields come "
                      "after every numeric field"),
            std::string::npos);
  EXPECT_NE(schema_error({qty, {"a", FieldType::text, 0, 128}, {"b", FieldType::text, 0, 128}})
                .find("the fields take 17 value slots: the limit is 16"),
            std::string::npos);
  EXPECT_NE(
      schema_error({{"qty", FieldType::decimal, 18, 4}}).find("only text fields have a length"),
      std::string::npos);
  EXPECT_EQ(schema_error({qty, {"status", FieldType::text, 0, 16}}), "");

  const FieldSpec status{"status", FieldType::text, 0, 16};
  EXPECT_TRUE(validate_text(status, "PARTIALLY_FILLED"));  // exactly 16 bytes
  EXPECT_TRUE(validate_text(status, ""));
  EXPECT_TRUE(validate_text(status, "gefüllt €𝄞"));  // 2-, 3- and 4-byte UTF-8
  auto text_error = [&](std::string_view v) {
    auto r = validate_text(status, v);
    return r ? std::string() : r.error();
  };
  EXPECT_EQ(text_error("PARTIALLY_FILLED!"), "text field 'status' holds at most 16 bytes, got 17");
  EXPECT_EQ(text_error(std::string_view("ab\0c", 4)),
            "text field 'status' may not contain NUL (byte 2)");
  for (const std::string_view bad :
       {std::string_view("a\xFF"), std::string_view("a\xC0\x80"), std::string_view("a\xED\xA0\x80"),
        std::string_view("a\xE2\x82"), std::string_view("a\xF4\x90\x80\x80"),
        std::string_view("a\x80")}) {
    EXPECT_EQ(text_error(bad), "text field 'status' is not valid UTF-8 (byte 1)") << bad.size();
  }
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

// A byte that is not printable ASCII is shown as \xHH, in hex, both where the message names it
// and in the echoed value: é is two UTF-8 bytes (\xc3\xa9), DEL is \x7f, and no control byte
// reaches a log.
TEST(SchemaTest, KeyErrorsShowUnprintableBytesAsHexEscapes) {
  auto a = validate_account("caf\xc3\xa9");
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("account 'caf\\xc3\\xa9' has '\\xc3' at position 3"), std::string::npos)
      << a.error();
  a = validate_account("del\x7f");
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("has '\\x7f' at position 3"), std::string::npos) << a.error();
  a = validate_account("esc\x1b[31mred");
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().find("account 'esc\\x1b[31mred' has '\\x1b'"), std::string::npos)
      << a.error();
  for (const std::string& e : {a.error(), validate_instrument(std::string("x\0y", 3)).error(),
                               parse_decimal("1\x01", 2).error()}) {
    EXPECT_TRUE(std::all_of(e.begin(), e.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) << e;
  }
  EXPECT_NE(parse_decimal("1\x01", 2).error().find("decimal '1\\x01' has '\\x01' at position 1"),
            std::string::npos)
      << parse_decimal("1\x01", 2).error();
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
