// The JSON-lines decoder: every command decodes to what the executor expects, and every kind of
// bad line gets an error naming the member and the value (the fuzz target checks it never
// crashes; this checks it says why).
#include "writer/ingest/json_codec.hpp"

#include <gtest/gtest.h>

namespace poscache::ingest {
namespace {

std::vector<NamespaceSpec> specs() {
  return {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
}

struct Codec {
  std::vector<NamespaceSpec> ns = specs();
  JsonDecoder d{ns};
  Command ok(const std::string& line) {
    auto r = d.decode(line);
    if (auto* f = std::get_if<JsonDecoder::Failure>(&r)) {
      ADD_FAILURE() << line << " -> " << f->error;
      return InvalidateAll{};
    }
    return std::get<DecodedLine>(r).command;
  }
  std::string error(const std::string& line) {
    auto r = d.decode(line);
    if (auto* f = std::get_if<JsonDecoder::Failure>(&r)) return f->error;
    ADD_FAILURE() << line << " decoded, but it should not";
    return {};
  }
};

TEST(JsonCodecTest, EachCommandDecodes) {
  Codec c;
  auto up = c.ok(R"({"op":"upsert","ns":"spot","account":"w1","instrument":"SOL",)"
                 R"("fields":{"qty":"12.5","avg_price":141},"mode":"replace","seq":7})");
  const auto& u = std::get<Update>(up);
  EXPECT_EQ(u.account_view(), "w1");
  EXPECT_EQ(u.fields_mask, 0b11u);
  EXPECT_EQ(u.mode, UpdateMode::replace);
  EXPECT_EQ(u.source_seq, 7u);
  EXPECT_EQ(format_decimal(u.values[0], 18), "12.500000000000000000");
  EXPECT_EQ(format_decimal(u.values[1], 18), "141.000000000000000000");

  EXPECT_EQ(
      std::get<Erase>(c.ok(R"({"op":"erase","ns":"marks","account":"a","instrument":"B"})")).key.ns,
      2);
  const auto ia =
      std::get<InvalidateAccount>(c.ok(R"({"op":"invalidate","account":"w1","ns":"moonwell"})"));
  EXPECT_EQ(ia.account, "w1");
  EXPECT_EQ(ia.ns, std::optional<NamespaceId>(1));
  EXPECT_EQ(std::get<InvalidateNamespace>(c.ok(R"({"op":"invalidate","ns":"marks"})")).ns, 2);
  EXPECT_EQ(std::get<InvalidateMatching>(c.ok(R"({"op":"invalidate","glob":"spot:*:SOL"})")).glob,
            "spot:*:SOL");
  EXPECT_TRUE(std::holds_alternative<InvalidateAll>(c.ok(R"({"op":"invalidate","all":true})")));

  const auto a = std::get<Add>(c.ok(R"({"op":"add","ns":"moonwell","account":"0xab",)"
                                    R"("instrument":"USDC","field":"blocks_unhealthy","by":-2})"));
  EXPECT_EQ(a.field, 5);
  EXPECT_EQ(a.by, -2);
  EXPECT_FALSE(a.reset);

  const auto f = std::get<Fill>(c.ok(R"({"op":"fill","ns":"spot","account":"w1","instrument":)"
                                     R"("SOL","side":"sell","qty":"2","price":"150.25",)"
                                     R"("fee":"0.01","trade_id":"T-9"})"));
  EXPECT_EQ(f.fill.side, Side::sell);
  EXPECT_EQ(format_decimal(f.fill.price, 18), "150.250000000000000000");
  EXPECT_EQ(f.trade_id_view(), "T-9");

  const auto m =
      std::get<Mark>(c.ok(R"({"op":"mark","ns":"spot","instrument":"SOL","price":"9"})"));
  EXPECT_TRUE(m.all_accounts());
}

TEST(JsonCodecTest, TheIdIsEchoedInTheReply) {
  Codec c;
  auto r = c.d.decode(R"({"id":"abc","op":"invalidate","all":true})");
  EXPECT_EQ(std::get<DecodedLine>(r).id, "\"abc\"");
  EXPECT_EQ(encode_reply({CommandStatus::applied, 12, 0, {}}, "\"abc\""),
            "{\"id\":\"abc\",\"status\":\"applied\",\"version\":12}\n");
  EXPECT_EQ(encode_reply({CommandStatus::applied, 0, 3, {}}, "7"),
            "{\"id\":7,\"status\":\"applied\",\"count\":3}\n");
  EXPECT_EQ(encode_reply({CommandStatus::duplicate, 0, 0, {}}, ""), "{\"status\":\"duplicate\"}\n");
  EXPECT_EQ(encode_error("bad \"x\"", ""),
            "{\"status\":\"rejected\",\"error\":\"bad \\\"x\\\"\"}\n");
  auto bad = c.d.decode(R"({"id":5,"op":"nope"})");
  EXPECT_EQ(std::get<JsonDecoder::Failure>(bad).id, "5");
}

TEST(JsonCodecTest, BadLinesAreRefusedNamingTheMemberAndTheValue) {
  Codec c;
  const std::pair<std::string, std::string> cases[] = {
      {"not json", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {R"({"ns":"spot"})", "missing member \"op\""},
      {R"({"op":"launch"})", "unknown op \"launch\""},
      // A misspelt member is refused, not ignored (a "tradeId" would lose the de-duplication,
      // a "fees" the fee), and a member given twice too (which one wins is not the producer's
      // to guess).
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"1","price":"1","tradeId":"T"})",
       "fill: unknown member \"tradeId\" (fill takes ns, account, instrument, side, qty, price, "
       "fee, trade_id, seq)"},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"1","price":"1","fees":"5"})",
       "unknown member \"fees\""},
      {R"({"op":"fill","op":"erase","ns":"spot","account":"a","instrument":"B"})",
       "member \"op\" is given twice"},
      {R"({"op":"erase","ns":"spot","account":"a","instrument":"B","account":"c"})",
       "member \"account\" is given twice"},
      {R"({"op":"batch","commands":[{"op":"erase","ns":"spot","account":"a","instrument":"B","x":1}]})",
       "batch: command 0 (erase): unknown member \"x\""},
      {R"({"op":"upsert","ns":"futures","account":"a","instrument":"B","fields":{"qty":"1"}})",
       "futures"},
      {R"({"op":"upsert","ns":"spot","account":"a:b","instrument":"B","fields":{"qty":"1"}})",
       "a:b"},
      {R"({"op":"upsert","ns":"spot","account":"a","instrument":"B","fields":{"qtty":"1"}})",
       "qtty"},
      {R"({"op":"upsert","ns":"spot","account":"a","instrument":"B","fields":{"qty":1.5}})",
       "floating-point"},
      {R"({"op":"upsert","ns":"spot","account":"a","instrument":"B","fields":{"qty":"1.5x"}})",
       "1.5x"},
      {R"({"op":"upsert","ns":"spot","account":"a","instrument":"B","fields":{}})",
       "non-empty object"},
      {R"({"op":"upsert","ns":"spot","account":"a","instrument":"B","fields":{"qty":"1"},"seq":-1})",
       "\"seq\""},
      {R"({"op":"upsert","ns":"spot","account":7,"instrument":"B","fields":{"qty":"1"}})",
       "member \"account\" must be a string; found 7"},
      {R"({"op":"fill","ns":"moonwell","account":"a","instrument":"B","side":"buy","qty":"1","price":"1"})",
       "namespace 'moonwell' has no field 'qty'"},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"hold","qty":"1","price":"1"})",
       "\"hold\""},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"0","price":"1"})",
       "greater than 0"},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"1","price":"-1"})",
       "must not be negative"},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"1"})",
       "missing member \"price\""},
      {R"({"op":"fill","ns":"spot","account":"a","instrument":"B","side":"buy","qty":"1","price":"1","trade_id":""})",
       "trade_id"},
      {R"({"op":"mark","ns":"marks","instrument":"B","price":"1"})", "mark_price"},
      {R"({"op":"add","ns":"moonwell","account":"a","instrument":"B","field":"blocks"})", "blocks"},
      {R"({"op":"add","ns":"moonwell","account":"a","instrument":"B","field":"blocks_unhealthy"})",
       "exactly one of"},
      {R"({"op":"add","ns":"moonwell","account":"a","instrument":"B","field":"blocks_unhealthy","by":"x"})",
       "\"by\""},
      {R"({"op":"invalidate"})", "needs one of"},
      {R"({"op":"invalidate","glob":"*","all":true})", "one of"},
      {R"({"op":"invalidate","all":false})", "must be true"},
      {R"({"op":"invalidate","glob":""})", "glob"},
      {std::string(kMaxJsonLine + 1, ' '), "the limit is"},
  };
  for (const auto& [line, want] : cases) {
    const std::string e = c.error(line);
    EXPECT_NE(e.find(want), std::string::npos) << line.substr(0, 120) << "\n  -> " << e;
  }
}

}  // namespace
}  // namespace poscache::ingest
