// writer/journal: the removal journal's codec, validation, append and tail, on a journal in
// private memory laid out as in a segment (shm/layout.hpp).
#include "writer/journal.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;
using namespace poscache::shm;

namespace {

// The journal of a segment of capacity 1 (1024 entries), in private memory.
struct Scratch {
  test::PrivateSegment seg{1};
  Journal journal{seg.base(), seg.g};
  JournalHeader& header() { return journal.header(); }
};

}  // namespace

TEST(JournalTest, EveryKindRoundTripsThroughItsEntry) {
  const RemovalEvent events[] = {
      erase_of(KeyRef{1, "alice", "SOL"}, 10),
      pattern_of(RemovalEvent::Kind::account, 11, NamespaceId{2}, "alice"),
      pattern_of(RemovalEvent::Kind::account, 12, std::nullopt, "bob"),
      pattern_of(RemovalEvent::Kind::ns, 13, NamespaceId{0}, {}),
      pattern_of(RemovalEvent::Kind::glob, 14, std::nullopt, "spot:*:SOL"),
      pattern_of(RemovalEvent::Kind::all, 15, std::nullopt, {}),
  };
  for (const RemovalEvent& e : events) {
    JournalEntry entry{};
    to_entry(e, entry);
    const RemovalEvent back = from_entry(entry, 41);
    EXPECT_EQ(back.kind, e.kind);
    EXPECT_EQ(back.version, e.version);
    EXPECT_EQ(back.ns, e.ns);
    EXPECT_EQ(back.text, e.text);
    EXPECT_EQ(back.journal_pos, 42u);
    EXPECT_EQ(std::memcmp(&back.payload, &e.payload, sizeof e.payload), 0);
  }
  SlotPayload p = free_slot_payload();
  p.ns = 0;
  p.version = 9;
  const RemovalEvent spill = spill_of(p);
  EXPECT_EQ(spill.kind, RemovalEvent::Kind::spill);
  EXPECT_EQ(spill.version, 9u);
}

TEST(JournalTest, CoversWhatEachKindRemovesAndNothingElse) {
  const SlotPayload p = test::key_payload(1, "alice", "SOL");
  using K = RemovalEvent::Kind;
  EXPECT_TRUE(covers(erase_of(KeyRef{1, "alice", "SOL"}, 1), "moonwell", p));
  EXPECT_FALSE(covers(erase_of(KeyRef{0, "alice", "SOL"}, 1), "moonwell", p));
  EXPECT_FALSE(covers(erase_of(KeyRef{1, "alice", "SO"}, 1), "moonwell", p));
  EXPECT_TRUE(covers(pattern_of(K::account, 1, std::nullopt, "alice"), "moonwell", p));
  EXPECT_TRUE(covers(pattern_of(K::account, 1, NamespaceId{1}, "alice"), "moonwell", p));
  EXPECT_FALSE(covers(pattern_of(K::account, 1, NamespaceId{0}, "alice"), "moonwell", p));
  EXPECT_FALSE(covers(pattern_of(K::account, 1, std::nullopt, "alic"), "moonwell", p));
  EXPECT_TRUE(covers(pattern_of(K::ns, 1, NamespaceId{1}, {}), "moonwell", p));
  EXPECT_FALSE(covers(pattern_of(K::ns, 1, NamespaceId{0}, {}), "moonwell", p));
  EXPECT_TRUE(covers(pattern_of(K::glob, 1, std::nullopt, "moonwell:a*:S?L"), "moonwell", p));
  EXPECT_FALSE(covers(pattern_of(K::glob, 1, std::nullopt, "spot:*"), "moonwell", p));
  EXPECT_TRUE(covers(pattern_of(K::all, 1, std::nullopt, {}), "moonwell", p));
  EXPECT_FALSE(covers(spill_of(p), "moonwell", p));
}

TEST(JournalTest, AnEntryNoWriterCouldHaveWrittenIsNamed) {
  auto problem = [](auto&& edit) {
    JournalEntry e{};
    to_entry(erase_of(KeyRef{0, "alice", "SOL"}, 5), e);
    edit(e);
    return entry_problem(e, 100, 2);
  };
  EXPECT_EQ(problem([](JournalEntry&) {}), "");
  EXPECT_EQ(problem([](JournalEntry& e) { e.kind = kJournalKindCount; }), "unknown kind 6");
  EXPECT_EQ(problem([](JournalEntry& e) { e.version = 100; }),
            "version 100 was never handed out (next is 100)");
  EXPECT_EQ(problem([](JournalEntry& e) { e.version = 0; }),
            "version 0 was never handed out (next is 100)");
  EXPECT_EQ(problem([](JournalEntry& e) { e.text_len = kJournalTextMax + 1; }), "text length 257");
  EXPECT_EQ(problem([](JournalEntry& e) { e.payload.ns = 2; }), "namespace id 2");
  EXPECT_EQ(problem([](JournalEntry& e) { e.payload.account[0] = ' '; }), "invalid account");
  EXPECT_EQ(problem([](JournalEntry& e) { e.payload.instrument_len = 0; }), "invalid instrument");
  EXPECT_EQ(problem([](JournalEntry& e) {
              e.kind = static_cast<std::uint8_t>(RemovalEvent::Kind::spill);
              e.payload.version = 4;
            }),
            "spill of version 4");
  EXPECT_EQ(problem([](JournalEntry& e) {
              to_entry(pattern_of(RemovalEvent::Kind::ns, 5, std::nullopt, {}), e);
            }),
            "namespace removal without a namespace");
  EXPECT_EQ(problem([](JournalEntry& e) {
              to_entry(pattern_of(RemovalEvent::Kind::account, 5, std::nullopt, "a b"), e);
            }),
            "account is not a valid account");
  EXPECT_EQ(problem([](JournalEntry& e) {
              to_entry(pattern_of(RemovalEvent::Kind::glob, 5, std::nullopt, {}), e);
            }),
            "empty pattern");
}

TEST(JournalTest, AppendFillsToTheSizeThenCountsOverflowsAndTheTailFreesInOrder) {
  Scratch s;
  Journal& j = s.journal;
  const std::uint64_t n = j.size();
  ASSERT_EQ(n, 1024u);
  for (std::uint64_t i = 0; i < n; ++i) {
    RemovalEvent e = erase_of(KeyRef{0, "a" + std::to_string(i), "X"}, i + 1);
    j.append(e);
    ASSERT_EQ(e.journal_pos, i + 1);
  }
  EXPECT_EQ(j.pending(), n);
  RemovalEvent late = erase_of(KeyRef{0, "late", "X"}, n + 1);
  j.append(late);
  EXPECT_EQ(late.journal_pos, 0u);  // not recorded: the caller still hands it to the sync
  EXPECT_EQ(j.overflows(), 1u);
  RemovalEvent long_text =
      pattern_of(RemovalEvent::Kind::glob, 1, std::nullopt, std::string(kJournalTextMax + 1, '*'));
  JournalTail tail(j);
  tail.done(2);  // entry 1 done before entry 0: the tail cannot pass entry 0 yet
  EXPECT_EQ(load_relaxed(&s.header().tail), 0u);
  tail.done(1);
  EXPECT_EQ(load_relaxed(&s.header().tail), 2u);
  tail.done(0);  // not journaled: nothing
  EXPECT_EQ(j.pending(), n - 2);
  j.append(long_text);  // room now, but the text does not fit an entry
  EXPECT_EQ(long_text.journal_pos, 0u);
  EXPECT_EQ(j.overflows(), 2u);
  RemovalEvent again = erase_of(KeyRef{0, "again", "X"}, n + 2);
  j.append(again);  // reuses entry 0's room
  EXPECT_EQ(again.journal_pos, n + 1);
}

TEST(JournalTest, ScanReturnsThePendingEntriesAndSkipsTheCorruptOnes) {
  Scratch s;
  Journal& j = s.journal;
  for (std::uint64_t v = 1; v <= 5; ++v) {
    RemovalEvent e = erase_of(KeyRef{0, "a" + std::to_string(v), "X"}, v);
    j.append(e);
  }
  JournalTail tail(j);
  tail.done(1);  // entry 0 is in Redis
  const Journal::Scan ok = j.scan(100, 1);
  EXPECT_FALSE(ok.header_corrupt);
  ASSERT_EQ(ok.valid.size(), 4u);
  EXPECT_EQ(ok.valid.front().first, 1u);
  EXPECT_TRUE(ok.invalid.empty());
  const Journal::Scan some = j.scan(4, 1);  // versions 4 and 5 were never handed out
  EXPECT_EQ(some.valid.size(), 2u);
  EXPECT_EQ(some.invalid, (std::vector<std::uint64_t>{3, 4}));
  EXPECT_EQ(some.problem, "entry 3: version 4 was never handed out (next is 4)");

  store_relaxed(&s.header().head, 0u);  // behind the tail: the header cannot be trusted
  const Journal::Scan bad = j.scan(100, 1);
  EXPECT_TRUE(bad.header_corrupt);
  EXPECT_TRUE(bad.valid.empty());
  EXPECT_NE(bad.problem.find("head 0, tail 1"), std::string::npos) << bad.problem;
  EXPECT_EQ(load_relaxed(&s.header().tail), 0u);  // moved to the head: empty from now on
}
