// The producer ring's message decoder (writer/ingest/ring_codec.hpp), on messages built by hand:
// each kind decodes to the command it names, every byte it trusts is range-checked with an error
// naming it, and the copy out of the shared ring takes what the decoder reads and nothing else.
// (End to end, over real rings: tests/ingest/ring_source_test.cpp; fuzzed:
// tests/fuzz/ring_message_fuzz.cpp.)
#include "writer/ingest/ring_codec.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <string_view>

#include "poscache/schema.hpp"
#include "shm/hash.hpp"

namespace poscache::ingest {
namespace {

constexpr std::size_t kNamespaces = 3;  // spot (trading), moonwell (lending), marks (quote)

shm::RingMessage ring_msg(shm::RingKind kind, NamespaceId ns, std::string_view account,
                          std::string_view instrument) {
  shm::RingMessage m{};
  m.kind = static_cast<std::uint8_t>(kind);
  m.ns = ns;
  m.account_len = static_cast<std::uint8_t>(account.size());
  m.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(m.account, account.data(), account.size());
  std::memcpy(m.instrument, instrument.data(), instrument.size());
  return m;
}
void put_slot(shm::RingMessage& m, std::size_t slot, int128 v) {
  const auto u = static_cast<unsigned __int128>(v);
  m.values[2 * slot] = static_cast<std::uint64_t>(u);
  m.values[2 * slot + 1] = static_cast<std::uint64_t>(u >> 64);
}

struct RingParts {
  RingDecoded what = RingDecoded::bad;
  Update update;
  std::uint64_t hash = 0;
  Command command;
  std::string error;
};
RingParts ring_decode(const shm::RingMessage& m, const SlotMasks* slots = nullptr) {
  RingParts d;
  d.what = decode_ring_message(m, kNamespaces, d.update, d.hash, d.command, d.error, slots);
  return d;
}

TEST(RingCodecTest, AnUpsertCarriesItsKeyModeFieldsValuesSequenceAndClaimedHash) {
  auto m = ring_msg(shm::RingKind::upsert, 0, "w1", "SOL");
  m.mode = 1;
  m.fields_mask = 0b101;  // fields 0 and 2
  m.source_seq = 77;
  m.key_hash = 0xfeedULL;
  put_slot(m, 0, -int128{12'500'000'000} * 1'000'000'000);  // beyond 64 bits, negative
  put_slot(m, 1, 999);                                      // not in the mask: not taken
  put_slot(m, 2, 3);
  const RingParts d = ring_decode(m);
  ASSERT_EQ(d.what, RingDecoded::upsert) << d.error;
  EXPECT_EQ(d.update.ns, 0);
  EXPECT_EQ(d.update.account_view(), "w1");
  EXPECT_EQ(d.update.instrument_view(), "SOL");
  EXPECT_EQ(d.update.mode, UpdateMode::replace);
  EXPECT_EQ(d.update.fields_mask, 0b101u);
  EXPECT_EQ(d.update.source_seq, 77u);
  EXPECT_EQ(d.hash, 0xfeedULL);  // passed on as claimed: the writer proves it
  EXPECT_TRUE(d.update.values[0] == -int128{12'500'000'000} * 1'000'000'000);
  EXPECT_TRUE(d.update.values[1] == 0);
  EXPECT_TRUE(d.update.values[2] == 3);
  m.mode = 2;
  const RingParts bad = ring_decode(m);
  EXPECT_EQ(bad.what, RingDecoded::bad);
  EXPECT_EQ(bad.error, "upsert: mode 2 is neither merge nor replace");
}

TEST(RingCodecTest, EachCommandKindDecodesToTheCommandItNames) {
  {
    const RingParts d = ring_decode(ring_msg(shm::RingKind::erase, 1, "0xab", "USDC"));
    ASSERT_EQ(d.what, RingDecoded::command) << d.error;
    const auto& e = std::get<Erase>(d.command);
    EXPECT_EQ(e.key.ns, 1);
    EXPECT_EQ(e.key.account, "0xab");
    EXPECT_EQ(e.key.instrument, "USDC");
  }
  {
    auto m = ring_msg(shm::RingKind::invalidate_account, 2, "w1", "");
    const RingParts all_ns = ring_decode(m);  // field 0: every namespace, whatever ns says
    ASSERT_EQ(all_ns.what, RingDecoded::command) << all_ns.error;
    EXPECT_EQ(std::get<InvalidateAccount>(all_ns.command).account, "w1");
    EXPECT_FALSE(std::get<InvalidateAccount>(all_ns.command).ns.has_value());
    m.field = 1;
    const RingParts one_ns = ring_decode(m);
    EXPECT_EQ(std::get<InvalidateAccount>(one_ns.command).ns, std::optional<NamespaceId>(2));
  }
  {
    const RingParts d = ring_decode(ring_msg(shm::RingKind::invalidate_namespace, 2, "", ""));
    EXPECT_EQ(std::get<InvalidateNamespace>(d.command).ns, 2);
  }
  {
    auto m = ring_msg(shm::RingKind::invalidate_glob, 0, "", "");
    const std::string glob = "spot:w*:SOL";
    m.text_len = static_cast<std::uint8_t>(glob.size());
    std::memcpy(m.text, glob.data(), glob.size());
    EXPECT_EQ(std::get<InvalidateMatching>(ring_decode(m).command).glob, glob);
  }
  EXPECT_TRUE(std::holds_alternative<InvalidateAll>(
      ring_decode(ring_msg(shm::RingKind::invalidate_all, 0, "", "")).command));
  {
    auto m = ring_msg(shm::RingKind::add, 1, "0xab", "USDC");
    m.field = 5;
    m.source_seq = 9;
    put_slot(m, 0, -4);
    const RingParts d = ring_decode(m);
    const Add a = std::get<Add>(d.command);
    EXPECT_EQ(a.key.account_view(), "0xab");
    EXPECT_EQ(a.field, 5);
    EXPECT_EQ(a.by, -4);
    EXPECT_FALSE(a.reset);
    EXPECT_EQ(a.source_seq, 9u);
    m.mode = 1;
    EXPECT_TRUE(std::get<Add>(ring_decode(m).command).reset);
  }
  {
    auto m = ring_msg(shm::RingKind::fill, 0, "w1", "SOL");
    m.mode = 1;
    put_slot(m, 0, 10);
    put_slot(m, 1, 1005);
    put_slot(m, 2, 1);
    m.text_len = 4;
    std::memcpy(m.text, "T-77", 4);
    const Fill f = std::get<Fill>(ring_decode(m).command);
    EXPECT_EQ(f.fill.side, Side::sell);
    EXPECT_TRUE(f.fill.qty == 10 && f.fill.price == 1005 && f.fill.fee == 1);
    EXPECT_EQ(f.trade_id_view(), "T-77");
  }
  {
    auto m = ring_msg(shm::RingKind::mark, 0, "", "SOL");  // every account
    put_slot(m, 0, 125);
    const Mark mk = std::get<Mark>(ring_decode(m).command);
    EXPECT_TRUE(mk.all_accounts());
    EXPECT_TRUE(mk.price == 125);
    EXPECT_EQ(mk.key.instrument_view(), "SOL");
  }
}

TEST(RingCodecTest, EveryByteItTrustsIsCheckedAndTheErrorNamesIt) {
  const auto refusal = [](const shm::RingMessage& m) {
    const RingParts d = ring_decode(m);
    EXPECT_EQ(d.what, RingDecoded::bad);
    return d.error;
  };
  auto m = ring_msg(shm::RingKind::upsert, 0, "w1", "SOL");
  m.kind = 0;
  EXPECT_EQ(refusal(m), "unknown message kind 0");
  m.kind = 11;
  EXPECT_EQ(refusal(m), "unknown message kind 11");
  m.kind = static_cast<std::uint8_t>(shm::RingKind::group);
  EXPECT_EQ(refusal(m), "a batch header inside a batch (a batch cannot hold a batch)");
  m = ring_msg(shm::RingKind::erase, 3, "w1", "SOL");
  EXPECT_EQ(refusal(m), "namespace id 3 is not one of the segment's 3");
  m = ring_msg(shm::RingKind::upsert, 0, "w1", "SOL");
  m.account_len = 65;
  EXPECT_EQ(refusal(m), "a length beyond its field (account 65, instrument 3, text 0)");
  m = ring_msg(shm::RingKind::fill, 0, "w1", "SOL");
  m.text_len = 97;
  EXPECT_EQ(refusal(m), "a length beyond its field (account 2, instrument 3, text 97)");
  m.text_len = 65;  // inside the ring's text, beyond a trade id
  EXPECT_EQ(refusal(m), "fill: trade id longer than 64");
  m.text_len = 0;
  m.mode = 2;
  EXPECT_EQ(refusal(m), "fill: side 2 is neither buy nor sell");
  for (const auto kind :
       {shm::RingKind::upsert, shm::RingKind::erase, shm::RingKind::add, shm::RingKind::fill}) {
    EXPECT_EQ(refusal(ring_msg(kind, 0, "", "SOL")), "an empty account or instrument");
    EXPECT_EQ(refusal(ring_msg(kind, 0, "w1", "")), "an empty account or instrument");
  }
  EXPECT_EQ(refusal(ring_msg(shm::RingKind::mark, 0, "", "")), "an empty account or instrument");
  m = ring_msg(shm::RingKind::add, 1, "0xab", "USDC");
  put_slot(m, 0, int128{INT64_MAX} + 1);
  EXPECT_EQ(refusal(m), "add: 'by' is beyond 64 bits");
  put_slot(m, 0, int128{INT64_MIN} - 1);
  EXPECT_EQ(refusal(m), "add: 'by' is beyond 64 bits");
}

TEST(RingCodecTest, KindsWithoutANamespaceIgnoreTheirNamespaceByte) {
  auto glob = ring_msg(shm::RingKind::invalidate_glob, 999, "", "");
  glob.text_len = 1;
  glob.text[0] = '*';
  EXPECT_EQ(ring_decode(glob).what, RingDecoded::command);
  EXPECT_EQ(ring_decode(ring_msg(shm::RingKind::invalidate_all, 999, "", "")).what,
            RingDecoded::command);
  auto account = ring_msg(shm::RingKind::invalidate_account, 999, "w1", "");
  EXPECT_EQ(ring_decode(account).what, RingDecoded::command);  // every namespace: ns unused
  account.field = 1;                                           // this namespace: checked
  EXPECT_EQ(ring_decode(account).error, "namespace id 999 is not one of the segment's 3");
}

// A text field spans several value slots (poscache/schema.hpp): the slots an upsert's mask names
// are all copied and decoded, and the slots it does not name are not read from the ring.
TEST(RingCodecTest, TheCopyTakesTheSlotsOfTheFieldsNamedAndNothingElse) {
  const SlotMasks slots = slot_masks({preset_trading("spot"), preset_lending("moonwell")});
  ASSERT_EQ(slots.size(), 2u);
  EXPECT_EQ(slots[0][0], 1u);           // qty: its own slot
  EXPECT_EQ(slots[1][6], 0b111u << 6);  // collateral_asset (text 48): slots 6, 7, 8
  EXPECT_EQ(slots_of_fields(&slots, 1, 1u << 6 | 1u), 0b111u << 6 | 1u);
  EXPECT_EQ(slots_of_fields(nullptr, 1, 1u << 6), 1u << 6);  // no masks: one slot per field
  EXPECT_EQ(slots_of_fields(&slots, 9, 1u << 3), 1u << 3);   // unknown namespace: the same

  auto src = ring_msg(shm::RingKind::upsert, 1, "0xab", "WETH");
  src.fields_mask = 1u << 6 | 1u;
  src.key_hash = shm::key_hash(1, "0xab", "WETH");
  for (std::size_t i = 0; i < 2 * kMaxFields; ++i) src.values[i] = 0x1111'0000'0000'0000ULL + i;
  std::memcpy(src.text, "not an upsert's", 15);
  shm::RingMessage dst;
  std::memset(&dst, 0xAB, sizeof dst);  // what the copy leaves alone keeps this
  copy_message(dst, src, &slots);
  EXPECT_EQ(std::memcmp(&dst, &src, offsetof(shm::RingMessage, account)), 0);
  EXPECT_EQ(std::string_view(dst.account, 4), "0xab");
  EXPECT_EQ(static_cast<unsigned char>(dst.account[4]), 0xABu);  // beyond account_len
  for (std::size_t slot = 0; slot < kMaxFields; ++slot) {
    const bool named = slot == 0 || (slot >= 6 && slot <= 8);
    for (std::size_t half = 0; half < 2; ++half) {
      const std::uint64_t w = dst.values[2 * slot + half];
      if (named)
        EXPECT_EQ(w, src.values[2 * slot + half]) << slot;
      else
        EXPECT_EQ(w, 0xABABABABABABABABULL) << slot;
    }
  }
  EXPECT_EQ(static_cast<unsigned char>(dst.text[0]), 0xABu);  // text_len 0: not copied
  const RingParts d = ring_decode(dst, &slots);
  ASSERT_EQ(d.what, RingDecoded::upsert) << d.error;
  for (std::size_t slot = 0; slot < kMaxFields; ++slot) {
    const bool named = slot == 0 || (slot >= 6 && slot <= 8);
    EXPECT_EQ(d.update.values[slot] != 0, named) << slot;  // the rest decoded as zero
  }
}

// Lengths out of range are clamped by the copy (the decoder then refuses the message), so a
// hostile length never reads past the message's arrays.
TEST(RingCodecTest, TheCopyClampsLengthsToTheirArrays) {
  auto src = ring_msg(shm::RingKind::fill, 0, "w1", "SOL");
  src.account_len = 255;
  src.instrument_len = 255;
  src.text_len = 255;
  std::memset(src.account, 'a', sizeof src.account);
  std::memset(src.instrument, 'i', sizeof src.instrument);
  std::memset(src.text, 't', sizeof src.text);
  shm::RingMessage dst{};
  copy_message(dst, src);
  EXPECT_EQ(std::string_view(dst.account, sizeof dst.account), std::string(kMaxAccountLen, 'a'));
  EXPECT_EQ(std::string_view(dst.text, sizeof dst.text), std::string(shm::kRingTextLen, 't'));
  EXPECT_EQ(ring_decode(dst).error,
            "a length beyond its field (account 255, instrument 255, text 255)");
}

}  // namespace
}  // namespace poscache::ingest
