// writer/redis/redis_format: the Redis format is a contract with services in other languages
// (docs/redis-format.md). Its keys, script arguments, schema text and decoding, exactly,
// without a server.
#include "writer/redis/redis_format.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>

#include "shm/slot_codec.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;
using namespace poscache::shm;
using namespace std::chrono_literals;

namespace {

RedisFormat format() {
  NamespaceSpec marks = preset_quote("marks");
  return RedisFormat("pc:v1", {preset_lending("moonwell"), marks});
}

std::vector<std::string> strings(const Args& a) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  a.view(argv, lens);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < argv.size(); ++i) out.emplace_back(argv[i], lens[i]);
  return out;
}

constexpr std::string_view kWeth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";

SlotPayload lending_position() {
  SlotPayload p = test::key_payload(0, "0xabcd", "USDC");
  set_field_value(p, 0, 1'500'000'000);  // collateral_amount, base units (scale 0)
  set_field_value(p, 3, static_cast<int128>(1'250'000'000'000'000'000));  // health 1.25
  set_field_value(p, 5, -3);          // blocks_unhealthy (int64)
  set_payload_text(p, 6, 48, kWeth);  // collateral_asset (text, slots 6-8)
  p.fields_set = (1u << 0) | (1u << 3) | (1u << 5) | (1u << 6);
  p.version = 77;
  p.source_seq = 5;
  p.created_at_ns = 1'700'000'000'000'000'000;
  p.updated_at_ns = 1'700'000'000'123'000'000;
  return p;
}

// A hash as HGETALL returns it: an array of field, value strings.
struct FakeHash {
  std::deque<std::string> text;
  std::deque<redisReply> items;
  std::vector<redisReply*> ptrs;
  redisReply array{};
  FakeHash(std::initializer_list<std::pair<std::string, std::string>> kv) {
    for (const auto& [k, v] : kv) {
      for (const std::string* s : {&k, &v}) {
        text.push_back(*s);
        redisReply r{};
        r.type = REDIS_REPLY_STRING;
        r.str = text.back().data();
        r.len = text.back().size();
        items.push_back(r);
      }
    }
    for (auto& r : items) ptrs.push_back(&r);
    array.type = REDIS_REPLY_ARRAY;
    array.elements = ptrs.size();
    array.element = ptrs.data();
  }
};

}  // namespace

TEST(RedisFormatTest, KeysAreThePrefixTheNamespaceTheHashTaggedAccountAndTheInstrument) {
  const RedisFormat f = format();
  EXPECT_EQ(f.position_key("moonwell", "0xabcd", "USDC"), "pc:v1:moonwell:{0xabcd}:USDC");
  EXPECT_EQ(f.account_key("0xabcd"), "pc:v1:@account:{0xabcd}");
  EXPECT_EQ(f.schema_key(), "pc:v1:@schema");
  EXPECT_EQ(RedisFormat::member("marks", "BTC/USD"), "marks:BTC/USD");
  EXPECT_EQ(f.scan_pattern(std::nullopt), "pc:v1:*:{*}:*");
  EXPECT_EQ(f.scan_pattern(1), "pc:v1:marks:{*}:*");
  auto k = f.parse_key("pc:v1:moonwell:{0xabcd}:USDC");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->ns, "moonwell");
  EXPECT_EQ(k->account, "0xabcd");
  EXPECT_EQ(k->instrument, "USDC");
  for (const char* other : {"pc:v1:@account:{0xabcd}", "pc:v2:moonwell:{a}:X", "pc:v1:moonwell:a:X",
                            "pc:v1:moonwell:{}:X", "pc:v1:moonwell:{a}:", "pc:v1:Moon:{a}:X",
                            "pc:v1:moonwell:{a b}:X", "pc:v1"}) {
    EXPECT_FALSE(f.parse_key(other)) << other;
  }
}

TEST(RedisFormatTest, AnUpsertCarriesExactDecimalsTheUnsetFieldsAndTheMeta) {
  const RedisFormat f = format();
  Args keys, argv;
  f.add_upsert(lending_position(), keys, argv);
  EXPECT_EQ(strings(keys),
            (std::vector<std::string>{"pc:v1:moonwell:{0xabcd}:USDC", "pc:v1:@account:{0xabcd}"}));
  EXPECT_EQ(strings(argv),
            (std::vector<std::string>{"77",
                                      "moonwell:USDC",
                                      "0",  // version, member, no expiry
                                      "4",
                                      "8",  // 4 unset fields, 4 fields + 4 meta pairs
                                      "debt_amount",
                                      "liquidation_threshold",
                                      "last_update_block",
                                      "debt_asset",
                                      "collateral_amount",
                                      "1500000000",
                                      "health_factor",
                                      "1.250000000000000000",
                                      "blocks_unhealthy",
                                      "-3",
                                      "collateral_asset",  // a text field: the text itself
                                      std::string(kWeth),
                                      "version",
                                      "77",
                                      "source_seq",
                                      "5",
                                      "created_at",
                                      "1700000000000000000",
                                      "updated_at",
                                      "1700000000123000000"}));
  // A namespace with expire_after: the expiry in ms since the epoch.
  SlotPayload q = test::key_payload(1, "v", "BTC");
  q.fields_set = 1;
  set_field_value(q, 0, -5);
  q.version = 1;
  q.updated_at_ns = 1'000'000'000'000;
  keys.clear();
  argv.clear();
  f.add_upsert(q, keys, argv);
  const auto a = strings(argv);
  EXPECT_EQ(a[2], std::to_string((1'000'000'000'000 + 60'000'000'000) / 1'000'000));
  EXPECT_EQ(a[7], "bid");
  EXPECT_EQ(a[8], "-0.000000000000000005");
}

TEST(RedisFormatTest, DecodeReadsBackWhatAnUpsertWrote) {
  const RedisFormat f = format();
  const SlotPayload p = lending_position();
  FakeHash h{{"collateral_amount", "1500000000"},
             {"health_factor", "1.250000000000000000"},
             {"blocks_unhealthy", "-3"},
             {"collateral_asset", std::string(kWeth)},
             {"version", "77"},
             {"source_seq", "5"},
             {"created_at", "1700000000000000000"},
             {"updated_at", "1700000000123000000"}};
  const auto got = f.decode(ParsedKey{"moonwell", "0xabcd", "USDC"}, 0, &h.array);
  ASSERT_TRUE(got) << got.error();
  EXPECT_EQ(std::memcmp(&*got, &p, sizeof p), 0);
}

TEST(RedisFormatTest, DecodeNamesTheKeyAndTheFieldThatIsWrong) {
  const RedisFormat f = format();
  const ParsedKey k{"moonwell", "0xabcd", "USDC"};
  auto error = [&](FakeHash h) {
    auto r = f.decode(k, 0, &h.array);
    return r ? std::string() : r.error();
  };
  const std::string where = "pc:v1:moonwell:{0xabcd}:USDC: ";
  EXPECT_EQ(error({{"version", "1"}, {"created_at", "1"}}), where + "missing updated_at");
  EXPECT_EQ(error({{"version", "x"}, {"created_at", "1"}, {"updated_at", "1"}}),
            where + "version: 'x' is not an unsigned 64-bit integer");
  EXPECT_EQ(error({{"version", "0"}, {"created_at", "1"}, {"updated_at", "1"}}),
            where + "version 0 is not a version");
  EXPECT_EQ(error({{"version", "1"}, {"created_at", "1"}, {"updated_at", "1"}, {"apy", "1"}}),
            where + "field 'apy' is not in the schema of namespace 'moonwell'");
  const std::string bad =
      error({{"version", "1"}, {"created_at", "1"}, {"updated_at", "1"}, {"debt_amount", "1.5"}});
  EXPECT_EQ(bad.rfind(where + "field 'debt_amount': ", 0), 0u) << bad;
  // A text field: its length, NUL and UTF-8 are checked as any input's.
  const auto text_error = [&](std::string v) {
    return error({{"version", "1"}, {"created_at", "1"}, {"updated_at", "1"}, {"debt_asset", v}});
  };
  EXPECT_EQ(text_error(std::string(49, 'a')),
            where + "text field 'debt_asset' holds at most 48 bytes, got 49");
  EXPECT_EQ(text_error(std::string("0x\0ab", 5)),
            where + "text field 'debt_asset' may not contain NUL (byte 2)");
  EXPECT_EQ(text_error("0x\xC0\xAF"),
            where + "text field 'debt_asset' is not valid UTF-8 (byte 2)");
}

TEST(RedisFormatTest, TheSchemaIsJsonPerNamespace) {
  Args a;
  format().schema_args(a);
  const auto s = strings(a);
  ASSERT_EQ(s.size(), 6u);
  EXPECT_EQ(s[0], "HSET");
  EXPECT_EQ(s[1], "pc:v1:@schema");
  EXPECT_EQ(s[4], "marks");
  EXPECT_EQ(s[5],
            "{\"fields\":[{\"name\":\"bid\",\"type\":\"decimal\",\"scale\":18},"
            "{\"name\":\"ask\",\"type\":\"decimal\",\"scale\":18},"
            "{\"name\":\"last\",\"type\":\"decimal\",\"scale\":18}],"
            "\"stale_after_ms\":1000,\"expire_after_ms\":60000}");
  Args d;
  format().delete_args("sha1", "marks", "v", "BTC", 9, d);
  EXPECT_EQ(strings(d), (std::vector<std::string>{"EVALSHA", "sha1", "2", "pc:v1:marks:{v}:BTC",
                                                  "pc:v1:@account:{v}", "9", "marks:BTC"}));
}
