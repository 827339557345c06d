// writer/redis/warm_start: the table side of a warm start (WarmLoader), with no Redis: once the
// table is full, exactly the most recently updated `capacity` positions stay.
#include "writer/redis/warm_start.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "shm/hash.hpp"
#include "shm/segment.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;
using namespace poscache::shm;

TEST(WarmLoaderTest, KeepsExactlyTheMostRecentlyUpdatedCapacityPositions) {
  test::ScratchSegment seg("warm");
  CreateSpec spec;
  spec.name = seg.name();
  spec.capacity = 16;
  spec.namespaces = {preset_trading("spot")};
  spec.huge_pages = false;
  spec.now_ns = realtime_ns();
  Mapping m = create_segment(spec);
  Table table;
  table.bind(static_cast<std::byte*>(m.base()), geometry_for(spec.capacity));
  WarmLoader loader(table);
  // 100 positions in a random order (Redis's SCAN order), updated at times 1000 + i.
  std::vector<int> order(100);
  for (int i = 0; i < 100; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(5));
  std::uint64_t dropped = 0;
  for (const int i : order) {
    SlotPayload p = test::key_payload(0, "acct" + std::to_string(i), "X");
    p.fields_set = 1;
    p.version = 500 + static_cast<std::uint64_t>(i);
    p.created_at_ns = p.updated_at_ns = 1000 + i;
    dropped += loader.restore(p);
  }
  EXPECT_EQ(dropped, 84u);
  for (int i = 0; i < 100; ++i) {
    const std::string a = "acct" + std::to_string(i);
    const bool held = table.find(key_hash(0, a, "X"), 0, a, "X") != kNil;
    EXPECT_EQ(held, i >= 84) << a;
  }
  // The same key again with an older version changes nothing; a newer one replaces it.
  SlotPayload again = table.peek(table.find(key_hash(0, "acct99", "X"), 0, "acct99", "X"));
  again.version = 1;
  EXPECT_EQ(loader.restore(again), 0u);
  EXPECT_EQ(table.peek(table.find(key_hash(0, "acct99", "X"), 0, "acct99", "X")).version, 599u);
}
