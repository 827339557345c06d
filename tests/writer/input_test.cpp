// writer/input: one rule set. Each rule refuses on the hot path (check) and names what was wrong
// on the slow path (explain); the builders (make_update's) use the same rules.
#include "writer/input.hpp"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>

#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;

namespace {

std::vector<NamespaceSpec> specs() {
  return {preset_trading("spot"), preset_lending("moonwell")};
}

Update good_update() {
  return test::key_update(0, "alice", "SOL", 1);
}

}  // namespace

TEST(InputTest, EachRuleRefusesAndNamesWhatWasWrong) {
  const auto ns = specs();
  const InputRules rules(ns);
  ASSERT_TRUE(rules.check(good_update()).ok());
  struct Case {
    const char* what;
    void (*mutate)(Update&);
    InputFault fault;
    const char* message;
  };
  const Case cases[] = {
      {"namespace", [](Update& u) { u.ns = 2; }, InputFault::namespace_id,
       "namespace id 2 is out of range: this segment has 2 namespaces"},
      {"empty account", [](Update& u) { u.account_len = 0; }, InputFault::account_length,
       "account length 0 is out of range 1..64"},
      {"long account", [](Update& u) { u.account_len = 65; }, InputFault::account_length,
       "account length 65 is out of range 1..64"},
      {"long instrument", [](Update& u) { u.instrument_len = 65; }, InputFault::instrument_length,
       "instrument length 65 is out of range 1..64"},
      {"account text", [](Update& u) { u.account[1] = ':'; }, InputFault::account_text,
       "account 'a:ice'"},
      {"instrument text", [](Update& u) { u.instrument[0] = '\x7f'; }, InputFault::instrument_text,
       "\\x7f"},
      {"no fields", [](Update& u) { u.fields_mask = 0; }, InputFault::no_fields,
       "update of spot:alice:SOL sets no fields"},
      {"field beyond", [](Update& u) { u.fields_mask = 1u << 7; }, InputFault::unknown_fields,
       "sets field bit(s) beyond its 7 fields"},
      {"39 digits", [](Update& u) { u.values[0] = kDecimalLimit; }, InputFault::decimal_digits,
       "field 'qty': mantissa 100000000000000000000000000000000000000 has more than 38 digits"},
      {"int64 range",
       [](Update& u) {
         u.ns = 1;
         u.fields_mask = 1u << 4;  // last_update_block
         u.values[4] = static_cast<int128>(INT64_MAX) + 1;
       },
       InputFault::int64_range,
       "field 'last_update_block': 9223372036854775808 is out of the 64-bit range"},
  };
  for (const Case& c : cases) {
    Update u = good_update();
    c.mutate(u);
    const InputCheck got = rules.check(u);
    EXPECT_EQ(got.fault, c.fault) << c.what;
    const std::string msg = rules.explain(got, u);
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.what << ": " << msg;
    EXPECT_EQ(rules.problem(u), msg) << c.what;
  }
}

TEST(InputTest, TheInt64RangeIsTheFieldsTypeNotTheDecimalLimit) {
  const auto ns = specs();
  const InputRules rules(ns);
  Update u = good_update();
  u.ns = 1;
  u.fields_mask = 1u << 4;
  u.values[4] = INT64_MIN;
  EXPECT_TRUE(rules.check(u).ok());
  u.values[4] = static_cast<int128>(INT64_MIN) - 1;
  EXPECT_EQ(rules.check(u).fault, InputFault::int64_range);
  u.ns = 0;  // the same value in a decimal field is fine (19 digits)
  u.fields_mask = 1;
  u.values[0] = static_cast<int128>(INT64_MIN) - 1;
  EXPECT_TRUE(rules.check(u).ok());
}

TEST(InputTest, BuildersUseTheSameRulesAndParseTheText) {
  const auto ns = specs();
  const InputRules rules(ns);
  const std::pair<std::string_view, std::string_view> f[] = {{"qty", "1.5"}, {"fees", "-0.25"}};
  auto u = rules.build("spot", "alice", "SOL", f, 7, UpdateMode::replace);
  ASSERT_TRUE(u) << u.error();
  EXPECT_EQ(u->fields_mask, (1u << 0) | (1u << 6));
  EXPECT_EQ(u->values[0], static_cast<int128>(15) * 100'000'000'000'000'000);
  EXPECT_EQ(u->source_seq, 7u);
  EXPECT_EQ(u->mode, UpdateMode::replace);

  const std::pair<std::string_view, std::string_view> unknown[] = {{"qtyy", "1"}};
  EXPECT_NE(rules.build("spot", "a", "X", unknown, 0, UpdateMode::merge)
                .error()
                .find("has no field 'qtyy': its fields are qty, avg_price"),
            std::string::npos);
  const std::pair<std::string_view, std::string_view> twice[] = {{"qty", "1"}, {"qty", "2"}};
  EXPECT_NE(rules.build("spot", "a", "X", twice, 0, UpdateMode::merge)
                .error()
                .find("field 'qty' is given twice"),
            std::string::npos);
  EXPECT_NE(rules.build("nope", "a", "X", f, 0, UpdateMode::merge)
                .error()
                .find("unknown namespace 'nope': this segment has spot, moonwell"),
            std::string::npos);
  const int128 big[kMaxFields] = {0, 0, 0, 0, static_cast<int128>(INT64_MAX) + 1};
  EXPECT_NE(rules.build(1, "a", "X", 1u << 4, big, 0, UpdateMode::merge)
                .error()
                .find("'last_update_block': 9223372036854775808 is out of the 64-bit range"),
            std::string::npos);
  EXPECT_NE(rules.build(0, "a b", "X", 1, big, 0, UpdateMode::merge).error().find("account"),
            std::string::npos);
}

TEST(InputTest, OpsKeysGlobsAndNamespacesAreCheckedByTheSameRules) {
  const auto ns = specs();
  const InputRules rules(ns);
  EXPECT_EQ(rules.problem(KeyRef{0, "alice", "SOL"}), "");
  EXPECT_NE(rules.problem(KeyRef{5, "alice", "SOL"}).find("namespace id 5"), std::string::npos);
  EXPECT_NE(rules.problem(KeyRef{0, "", "SOL"}).find("account"), std::string::npos);
  EXPECT_EQ(rules.problem(Op{InvalidateAll{}}), "");
  EXPECT_NE(rules.problem(Op{InvalidateNamespace{9}}).find("namespace id 9 is out of range"),
            std::string::npos);
  EXPECT_NE(rules.problem(Op{InvalidateAccount{"a b", std::nullopt}}).find("account"),
            std::string::npos);
  EXPECT_NE(rules.problem(Op{InvalidateAccount{"alice", NamespaceId{4}}}).find("namespace id 4"),
            std::string::npos);
  EXPECT_NE(rules.problem(Op{InvalidateMatching{""}})
                .find("glob pattern must be 1 to 256 characters, got 0"),
            std::string::npos);
  EXPECT_EQ(rules.problem(Op{InvalidateMatching{std::string(256, '*')}}), "");
  EXPECT_NE(rules.problem(Op{InvalidateMatching{std::string(257, '*')}}).find("got 257"),
            std::string::npos);
  Update bad = good_update();
  bad.fields_mask = 0;
  EXPECT_NE(rules.problem(Op{bad}).find("sets no fields"), std::string::npos);
}
