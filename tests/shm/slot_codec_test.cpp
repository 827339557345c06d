// shm/slot_codec: how a Position and a field's int128 mantissa sit in a slot's payload words.
#include "shm/slot_codec.hpp"

#include <gtest/gtest.h>

#include "shm/hash.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::shm;

TEST(SlotCodecTest, MantissasRoundTripThroughTheirTwoWordsAtTheExtremes) {
  SlotPayload p{};
  const int128 values[] = {0,
                           1,
                           -1,
                           kDecimalLimit - 1,
                           -(kDecimalLimit - 1),
                           static_cast<int128>(INT64_MIN),
                           static_cast<int128>(UINT64_MAX)};
  for (const int128 v : values) {
    set_field_value(p, 3, v);
    EXPECT_EQ(field_value(p, 3), v);
    const auto u = static_cast<unsigned __int128>(v);
    EXPECT_EQ(p.values[3][0], static_cast<std::uint64_t>(u));  // low word first
    EXPECT_EQ(p.values[3][1], static_cast<std::uint64_t>(u >> 64));
  }
}

TEST(SlotCodecTest, TheMetaWordCarriesFieldsSetInItsHighHalf) {
  SlotPayload p{};
  p.ns = 7;
  p.account_len = 3;
  p.instrument_len = 4;
  p.fields_set = 0b1011;
  std::uint64_t words[kPayloadWords];
  std::memcpy(words, &p, sizeof p);
  EXPECT_EQ(meta_fields_set(words[kWordMeta]), 0b1011u);
  const std::uint64_t w = meta_with_fields_set(words[kWordMeta], 0b100);
  std::memcpy(words + kWordMeta, &w, 8);
  SlotPayload q;
  std::memcpy(&q, words, sizeof q);
  EXPECT_EQ(q.fields_set, 0b100u);
  EXPECT_EQ(q.ns, 7);
  EXPECT_EQ(q.account_len, 3);
  EXPECT_EQ(q.instrument_len, 4);
}

TEST(SlotCodecTest, DecodeFillsAPositionAndZeroesTheFieldsBeyondTheSchema) {
  SlotPayload p = test::key_payload(2, "alice", "SOL");
  p.fields_set = 0b11;
  p.version = 9;
  p.source_seq = 4;
  p.created_at_ns = 10;
  p.updated_at_ns = 20;
  set_field_value(p, 0, -5);
  set_field_value(p, 1, 6);
  set_field_value(p, 2, 77);  // beyond the 2 fields decoded: must read as 0
  Position out;
  out.values[5] = 123;
  decode(p, 2, out);
  EXPECT_EQ(out.ns, 2);
  EXPECT_EQ(out.account_view(), "alice");
  EXPECT_EQ(out.instrument_view(), "SOL");
  EXPECT_EQ(out.values[0], -5);
  EXPECT_EQ(out.values[1], 6);
  EXPECT_EQ(out.values[2], 0);
  EXPECT_EQ(out.values[5], 0);
  EXPECT_EQ(out.version, 9u);
  EXPECT_EQ(out.source_seq, 4u);
  EXPECT_EQ(out.created_at_ns, 10);
  EXPECT_EQ(out.updated_at_ns, 20);
}

TEST(SlotCodecTest, SameKeyComparesTheWholeKeyNotAPrefix) {
  SlotPayload p = test::key_payload(1, "alice", "SOL");
  p.key_hash = key_hash(1, "alice", "SOL");
  EXPECT_TRUE(same_key(p, p.key_hash, 1, "alice", "SOL"));
  EXPECT_FALSE(same_key(p, p.key_hash ^ 1, 1, "alice", "SOL"));
  EXPECT_FALSE(same_key(p, p.key_hash, 0, "alice", "SOL"));
  EXPECT_FALSE(same_key(p, p.key_hash, 1, "alic", "SOL"));
  EXPECT_FALSE(same_key(p, p.key_hash, 1, "alice", "SOLX"));
  EXPECT_FALSE(same_key(p, p.key_hash, 1, "alicf", "SOL"));
  SlotPayload q = p;
  q.key_hash = 0;  // a journal event's payload carries no hash: compared by key only
  EXPECT_TRUE(same_key(p, q));
  q.instrument[2] = 'X';
  EXPECT_FALSE(same_key(p, q));
}
