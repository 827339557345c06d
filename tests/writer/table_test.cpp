// writer/table: the apply engine on a segment made by shm::create_segment, with no Writer around
// it: what each change writes, the undo record around every slot write, the recency order of
// evictions, and the rebuilds a re-attach relies on.
#include "writer/table.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "shm/hash.hpp"
#include "shm/segment.hpp"
#include "shm/seqlock.hpp"
#include "shm/slot_codec.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;
using namespace poscache::shm;

namespace {

class TableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CreateSpec spec;
    spec.name = seg.name();
    spec.capacity = 8;
    spec.namespaces = {preset_trading("spot"), preset_quote("marks")};
    spec.huge_pages = false;
    spec.now_ns = realtime_ns();
    mapping = create_segment(spec);
    base = static_cast<std::byte*>(mapping.base());
    table.bind(base, geometry_for(spec.capacity));
  }

  static Update update(const std::string& account, const std::string& instrument, int128 qty,
                       NamespaceId ns = 0) {
    return test::key_update(ns, account, instrument, qty);
  }
  std::uint32_t slot_of(const std::string& account, const std::string& instrument,
                        NamespaceId ns = 0) const {
    return table.find(key_hash(ns, account, instrument), ns, account, instrument);
  }
  const Counters counters() const { return load_counters(table.header()); }

  test::ScratchSegment seg{"table"};
  Mapping mapping;
  std::byte* base = nullptr;
  Table table;
};

}  // namespace

TEST_F(TableTest, AnUpdateWritesOnlyTheWordsItChangesUnderTheSeqlockAndDisarmsTheUndo) {
  ASSERT_EQ(table.upsert(update("alice", "SOL", 5)).status, ApplyStatus::inserted);
  const std::uint32_t s = slot_of("alice", "SOL");
  ASSERT_NE(s, kNil);
  const std::uint64_t seq0 = load_relaxed(&table.slot(s).seq);
  const SlotPayload before = table.peek(s);
  const ApplyResult r = table.upsert(update("alice", "SOL", 6));
  EXPECT_EQ(r.status, ApplyStatus::updated);
  const SlotPayload& after = table.peek(s);
  EXPECT_EQ(load_relaxed(&table.slot(s).seq), seq0 + 2);  // one write, published (even)
  EXPECT_EQ(load_relaxed(&table.area().undo.slot_plus_one), 0u);
  // The undo record holds what the write changed, nothing else: qty's low word, the version and
  // updated_at (the high word of 5 and 6 is the same 0; the meta word did not change).
  const UndoRecord& undo = table.area().undo;
  EXPECT_EQ(undo.seq_before, seq0);
  ASSERT_EQ(undo.count, 3u);
  EXPECT_EQ(undo.word[0], kWordVersion);
  EXPECT_EQ(undo.old[0], before.version);
  EXPECT_EQ(undo.word[1], kWordUpdatedAt);
  EXPECT_EQ(undo.word[2], kWordValues);
  EXPECT_EQ(undo.old[2], 5u);
  EXPECT_EQ(after.version, r.version);
  EXPECT_EQ(after.created_at_ns, before.created_at_ns);
  EXPECT_EQ(std::memcmp(after.account, before.account, sizeof after.account), 0);
  EXPECT_EQ(counters().inserts, 1u);
  EXPECT_EQ(counters().updates, 1u);
  EXPECT_EQ(counters().live, 1u);
}

TEST_F(TableTest, AFullTableEvictsTheLeastRecentlyUpdatedAcrossNamespaces) {
  for (int i = 0; i < 8; ++i)
    table.upsert(update("a" + std::to_string(i), "X", i, static_cast<NamespaceId>(i % 2)));
  table.upsert(update("a0", "X", 100));  // a0 is now the most recent: a1 is the oldest
  const ApplyResult r = table.upsert(update("new", "X", 1));
  EXPECT_EQ(r.status, ApplyStatus::inserted);
  EXPECT_TRUE(r.evicted);
  EXPECT_EQ(slot_of("a1", "X", 1), kNil);
  EXPECT_NE(slot_of("a0", "X", 0), kNil);
  EXPECT_EQ(counters().evictions, 1u);
  EXPECT_EQ(counters().live, 8u);
}

TEST_F(TableTest, TheBatchPipelineAppliesExactlyAsOneAtATime) {
  std::vector<Update> us;
  for (int i = 0; i < 40; ++i) us.push_back(update("b" + std::to_string(i % 11), "X", i));
  std::vector<ApplyResult> out(us.size());
  table.upsert_batch(us, out.data());
  // The reference: a list of keys, least recently updated first, of at most 8.
  std::vector<std::pair<int, int>> lru;  // key, last value
  std::uint64_t evictions = 0;
  for (int i = 0; i < 40; ++i) {
    const int k = i % 11;
    auto it = std::find_if(lru.begin(), lru.end(), [&](const auto& e) { return e.first == k; });
    if (it != lru.end()) {
      lru.erase(it);
    } else if (lru.size() == 8) {
      lru.erase(lru.begin());
      ++evictions;
    }
    lru.emplace_back(k, i);
  }
  for (int k = 0; k < 11; ++k) {
    const std::uint32_t s = slot_of("b" + std::to_string(k), "X");
    auto it = std::find_if(lru.begin(), lru.end(), [&](const auto& e) { return e.first == k; });
    if (it == lru.end()) {
      EXPECT_EQ(s, kNil) << k;
    } else {
      ASSERT_NE(s, kNil) << k;
      EXPECT_EQ(field_value(table.peek(s), 0), it->second) << k;
    }
  }
  EXPECT_EQ(counters().evictions, evictions);
}

TEST_F(TableTest, EraseAndInvalidationsRemoveWhatTheyNameAndCountIt) {
  table.upsert(update("alice", "SOL", 1));
  table.upsert(update("alice", "BTC", 1));
  table.upsert(update("alice", "SOL", 1, 1));
  table.upsert(update("bob", "SOL", 1));
  EXPECT_EQ(table.erase(KeyRef{0, "bob", "SOL"}).status, ApplyStatus::erased);
  EXPECT_EQ(table.erase(KeyRef{0, "bob", "SOL"}).status, ApplyStatus::not_found);
  EXPECT_EQ(table.invalidate_account("alice", NamespaceId{1}), 1u);
  EXPECT_EQ(table.invalidate_matching("spot:alice:B*"), 1u);
  EXPECT_EQ(table.invalidate_all(), 1u);
  EXPECT_EQ(counters().erases, 1u);
  EXPECT_EQ(counters().invalidations, 3u);
  EXPECT_EQ(counters().live, 0u);
  EXPECT_EQ(slot_of("alice", "SOL"), kNil);
}

TEST_F(TableTest, ADedupingRebuildKeepsTheNewerOfTwoSlotsHoldingOneKey) {
  table.upsert(update("alice", "SOL", 1));
  table.upsert(update("other", "SOL", 2));
  const std::uint32_t older = slot_of("alice", "SOL");
  const std::uint32_t newer = slot_of("other", "SOL");
  // Corrupt: the newer slot is rewritten to hold alice's key too.
  SlotPayload p = table.peek(newer);
  const SlotPayload& a = table.peek(older);
  std::memcpy(p.account, a.account, sizeof p.account);
  p.account_len = a.account_len;
  p.key_hash = a.key_hash;
  p.account_hash = a.account_hash;
  table.write_slot(newer, p);
  table.rebuild_index(true);
  table.rebuild_lists();
  EXPECT_EQ(table.peek(older).ns, kFreeNamespace);
  EXPECT_EQ(slot_of("alice", "SOL"), newer);
  EXPECT_EQ(field_value(table.peek(newer), 0), 2);
  EXPECT_EQ(counters().repairs, 1u);
  EXPECT_EQ(counters().live, 1u);
}

// The account hash beside the text is derived from it: re-attach corrects one that disagrees
// (a corrupt slot) before it links the slot into its account's list by it.
TEST_F(TableTest, RebuildingTheListsCorrectsAnAccountHashThatDisagreesWithItsText) {
  table.upsert(update("alice", "SOL", 1));
  table.upsert(update("alice", "BTC", 2));
  const std::uint32_t s = slot_of("alice", "SOL");
  SlotPayload p = table.peek(s);
  const std::uint64_t right = p.account_hash;
  p.account_hash = right ^ 0x5a5a;
  table.write_slot(s, p);
  table.open_all_accounts();
  table.rebuild_lists();
  table.close_all_accounts();
  EXPECT_EQ(table.peek(s).account_hash, right);
  EXPECT_EQ(counters().repairs, 1u);
  // Both positions are in alice's one list again: removing the account finds both.
  EXPECT_EQ(table.invalidate_account("alice", std::nullopt), 2u);
  EXPECT_EQ(table.open_accounts(), 0u) << "every stripe the removal opened is closed";
}

TEST_F(TableTest, FinishingAJournaledRemovalRemovesOnlyWhatIsOlderThanIt) {
  table.upsert(update("alice", "SOL", 1));
  const std::uint64_t cut = table.next_version();  // the removal's version
  table.raise_next_version(cut + 1);
  table.upsert(update("alice", "BTC", 1));  // written after it: survives
  const std::size_t removed =
      table.finish_removal(pattern_of(RemovalEvent::Kind::account, cut, std::nullopt, "alice"));
  EXPECT_EQ(removed, 1u);
  EXPECT_EQ(slot_of("alice", "SOL"), kNil);
  EXPECT_NE(slot_of("alice", "BTC"), kNil);
  EXPECT_EQ(table.finish_removal(spill_of(table.peek(slot_of("alice", "BTC")))), 0u);
}

TEST_F(TableTest, ARestoredPositionKeepsItsVersionAndCountsAsSynced) {
  SlotPayload p = test::key_payload(0, "eve", "ETH");
  p.fields_set = 1;
  set_field_value(p, 0, 42);
  p.version = table.next_version() + 1000;
  p.created_at_ns = p.updated_at_ns = realtime_ns();
  const std::uint32_t s = table.insert_synced(p);
  EXPECT_EQ(slot_of("eve", "ETH"), s);
  EXPECT_EQ(table.peek(s).version, p.version);
  EXPECT_EQ(table.book(s).synced_version, p.version);
  EXPECT_EQ(table.next_version(), p.version + 1);
}
