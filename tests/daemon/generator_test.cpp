// The synthetic producer the daemon's --generate runs.
#include "writer/daemon/generator.hpp"

#include <gtest/gtest.h>

#include "poscache/reader.hpp"
#include "test_util.hpp"

using namespace poscache;

// A restarted generator (a daemon restarted on its segment) must not start its source sequence
// over: every update would be refused as stale_source ("0 updates/s ... rejects 5000").
TEST(GeneratorTest, ARestartedGeneratorIsNotRefusedAsStale) {
  test::ScratchSegment seg("gen");
  auto w = Writer::open(test::small_config(seg.name(), 1000));
  daemon::GeneratorConfig g;
  g.enabled = true;
  g.rate = 1e9;  // everything due at once, up to the budget
  g.accounts = 10;
  g.instruments = 5;
  const std::int64_t t0 = 1'000'000'000;
  ingest::CommandExecutor exec(*w, nullptr);
  {
    daemon::SyntheticGenerator first(g, *w);
    first.poll(exec, t0, 256);
    first.poll(exec, t0 + 1'000'000'000, 256);
  }
  const SegmentStats before = Reader::open(seg.name()).stats();
  ASSERT_GT(before.inserts + before.updates, 0u);
  ASSERT_EQ(before.rejects, 0u);
  daemon::SyntheticGenerator second(g, *w);   // the same seed: the same positions again
  EXPECT_EQ(second.poll(exec, t0, 256), 0u);  // nothing due yet at its own start
  EXPECT_EQ(second.poll(exec, t0 + 1'000'000'000, 256), 256u);
  const SegmentStats after = Reader::open(seg.name()).stats();
  EXPECT_EQ(after.rejects, 0u) << "the restarted generator's updates were refused";
  EXPECT_EQ(after.inserts + after.updates, before.inserts + before.updates + 256);
}
