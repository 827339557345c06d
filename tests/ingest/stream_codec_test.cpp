// The Redis stream entry format (writer/ingest/stream_codec.hpp): stream ids packed into a
// position's source_seq in their order, an entry's one `cmd` field decoded as a JSON-lines
// command, the id standing in for a sequence the command lacks, and what a refused entry's copy
// carries. (Against a real redis-server: tests/ingest/stream_source_test.cpp; fuzzed:
// tests/fuzz/stream_entry_fuzz.cpp.)
#include "writer/ingest/stream_codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "poscache/schema.hpp"

namespace poscache::ingest {
namespace {

TEST(StreamCodecTest, StreamIdsPackInOrderAndBadOnesAreNamed) {
  EXPECT_EQ(*pack_stream_id("1-0"), 1u << 20);
  EXPECT_LT(*pack_stream_id("1700000000000-5"), *pack_stream_id("1700000000000-6"));
  EXPECT_LT(*pack_stream_id("1700000000000-1048575"), *pack_stream_id("1700000000001-0"));
  EXPECT_EQ(unpack_stream_id(*pack_stream_id("1700000000000-17")), "1700000000000-17");
  EXPECT_FALSE(pack_stream_id("0-0"));
  EXPECT_NE(pack_stream_id("12").error().find("MILLISECONDS-SEQUENCE"), std::string::npos);
  EXPECT_NE(pack_stream_id("1-x").error().find("\"1-x\""), std::string::npos);
  EXPECT_NE(pack_stream_id("99999999999999999-0").error().find("2^44"), std::string::npos);
}

TEST(StreamCodecTest, AnIdOutsideWhatASequenceCanOrderIsRefusedNamingIt) {
  EXPECT_EQ(*pack_stream_id("17592186044415-1048575"), ~0ull);  // the last id that packs
  EXPECT_NE(pack_stream_id("17592186044416-0").error().find("2^44"), std::string::npos);
  const auto seq = pack_stream_id("5-1048576");
  ASSERT_FALSE(seq);
  EXPECT_EQ(seq.error(),
            "stream id \"5-1048576\": more than 2^20 entries within one millisecond cannot order a "
            "position (source_seq)");
  for (const char* bad : {"", "-", "1-", "-1", "1-2-3", "+1-2", " 1-2", "1-0x2"})
    EXPECT_NE(pack_stream_id(bad).error().find("MILLISECONDS-SEQUENCE"), std::string::npos) << bad;
  // An id is shown bounded and printable in the error.
  const std::string huge = std::string(100, '7') + "\x01";
  const std::string why = pack_stream_id(huge).error();
  EXPECT_NE(why.find("..."), std::string::npos) << why;
  EXPECT_LT(why.size(), 140u) << why;
  EXPECT_EQ(unpack_stream_id(~0ull), "17592186044415-1048575");
}

std::vector<NamespaceSpec> stream_namespaces() {
  return {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")};
}

TEST(StreamCodecTest, TheEntryIdBecomesTheSequenceOfACommandThatHasNone) {
  const auto specs = stream_namespaces();
  const JsonDecoder decoder(specs);
  const std::uint64_t id = *pack_stream_id("1700000000000-3");
  const auto as_command = [&](const std::string& line) {
    auto r = decode_stream_entry(decoder, id, {{"trace", "t-1"}, {"cmd", line}});
    EXPECT_TRUE(std::holds_alternative<Command>(r)) << std::get<std::string>(r);
    return std::get<Command>(r);
  };
  const std::string key = R"("ns":"spot","account":"w1","instrument":"SOL")";
  EXPECT_EQ(std::get<Update>(as_command(R"({"op":"upsert",)" + key + R"(,"fields":{"qty":"1"}})"))
                .source_seq,
            id);
  EXPECT_EQ(
      std::get<Update>(as_command(R"({"op":"upsert",)" + key + R"(,"fields":{"qty":"1"},"seq":5})"))
          .source_seq,
      5u);  // its own sequence is kept
  EXPECT_EQ(std::get<Fill>(
                as_command(R"({"op":"fill",)" + key + R"(,"side":"buy","qty":"1","price":"2"})"))
                .source_seq,
            id);
  EXPECT_EQ(std::get<Add>(as_command(R"({"op":"add","ns":"moonwell","account":"0xab",)"
                                     R"("instrument":"USDC","field":"blocks_unhealthy","by":1})"))
                .source_seq,
            id);
  const Group g = std::get<Group>(
      as_command(R"({"op":"batch","commands":[{"op":"fill",)" + key +
                 R"(,"side":"buy","qty":"1","price":"2","trade_id":"T"},{"op":"upsert",)" + key +
                 R"(,"fields":{"qty":"3"},"seq":9}]})"));
  ASSERT_EQ(g.commands.size(), 2u);
  EXPECT_EQ(std::get<Fill>(g.commands[0]).source_seq, id);  // every command of a batch
  EXPECT_EQ(std::get<Update>(g.commands[1]).source_seq, 9u);
  EXPECT_TRUE(std::holds_alternative<Erase>(as_command(R"({"op":"erase",)" + key + "}")));
}

TEST(StreamCodecTest, AnEntryWithoutOneGoodCmdFieldIsRefusedSayingWhy) {
  const auto specs = stream_namespaces();
  const JsonDecoder decoder(specs);
  const auto refusal = [&](const StreamFields& fields) {
    auto r = decode_stream_entry(decoder, 1, fields);
    EXPECT_TRUE(std::holds_alternative<std::string>(r));
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
  };
  EXPECT_EQ(refusal({}), "entry has no 'cmd' field (a JSON-lines command); its fields: none");
  EXPECT_EQ(refusal({{"op", "fill"}, {"qty", "1"}}),
            "entry has no 'cmd' field (a JSON-lines command); its fields: \"op\", \"qty\"");
  EXPECT_EQ(refusal({{"cmd", R"({"op":"invalidate","all":true})"}, {"cmd", "{}"}}),
            "entry has two 'cmd' fields; it must have one");
  const std::string bad_op = refusal({{"cmd", R"({"op":"launch"})"}});
  EXPECT_EQ(bad_op.rfind("field 'cmd': ", 0), 0u) << bad_op;  // the decoder's words, placed
  EXPECT_NE(bad_op.find("unknown op \"launch\""), std::string::npos) << bad_op;
  EXPECT_EQ(refusal({{"cmd", std::string(kMaxJsonLine + 1, ' ')}}),
            "field 'cmd' is " + std::to_string(kMaxJsonLine + 1) + " bytes; the limit is " +
                std::to_string(kMaxJsonLine));
  // Many fields: the list is cut short, not the whole entry repeated.
  StreamFields many;
  for (int i = 0; i < 50; ++i) many.emplace_back("field" + std::to_string(i), "v");
  const std::string listed = refusal(many);
  EXPECT_NE(listed.find(", ..."), std::string::npos) << listed;
  EXPECT_LT(listed.size(), 200u) << listed;
}

TEST(StreamCodecTest, ARefusedEntrysCopyKeepsItsCmdOrElseEveryField) {
  EXPECT_EQ(rejected_payload({{"trace", "t"}, {"cmd", "{not json"}}), "{not json");
  EXPECT_EQ(rejected_payload({{"op", "fill"}, {"qty", "1"}}), R"({"op":"fill","qty":"1"})");
  EXPECT_EQ(rejected_payload({}), "{}");
  // Bytes that are not UTF-8 are replaced, so the copy is still JSON.
  EXPECT_EQ(rejected_payload({{"x", "a\xff"}}), "{\"x\":\"a\xef\xbf\xbd\"}");
}

}  // namespace
}  // namespace poscache::ingest
