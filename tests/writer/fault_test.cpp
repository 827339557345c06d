// A real writer killed at each step of a real slot write. ReattachTest hand-builds the undo
// record, so it proves repair from a correct record; this proves that the writer itself saves and
// arms the record before SW1 and keeps it armed until SW4 has published. The test binary links
// poscache_writer_faults, the writer with POSCACHE_FAULT_POINTS on (writer/fault_points.hpp), and
// defines fault_point(): it raises SIGKILL at the chosen step of the first slot write after the
// test arms it. Each operation (update, insert, erase) is cut at each step; the next writer must
// leave the position exactly as it was before the operation (cut before SW4) or exactly as the
// operation made it (cut after SW4), repair the slot only if it was left odd, and keep everything
// else.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <tuple>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/accounts.hpp"
#include "test_util.hpp"
#include "writer/fault_points.hpp"

using namespace poscache;
using poscache::detail::FaultPoint;

namespace {
bool g_armed = false;
FaultPoint g_target = FaultPoint::undo_saved;
int g_skip = 0;  // hits of the target to let pass first (the Nth write of a batch)
}  // namespace

namespace poscache::detail {
void fault_point(FaultPoint p) noexcept {
  if (g_armed && p == g_target && g_skip-- == 0) ::raise(SIGKILL);
}
}  // namespace poscache::detail

namespace {

enum class WriteOp { update, insert, erase };

const char* name_of(FaultPoint p) {
  switch (p) {
    case FaultPoint::undo_saved:
      return "UndoSaved";
    case FaultPoint::undo_armed:
      return "UndoArmed";
    case FaultPoint::after_w1:
      return "AfterW1";
    case FaultPoint::mid_w3:
      return "MidW3";
    case FaultPoint::after_w4:
      return "AfterW4";
    case FaultPoint::undo_disarmed:
      return "UndoDisarmed";
  }
  return "unknown";
}
const char* name_of(WriteOp o) {
  switch (o) {
    case WriteOp::update:
      return "Update";
    case WriteOp::insert:
      return "Insert";
    case WriteOp::erase:
      return "Erase";
  }
  return "unknown";
}

WriterConfig config(const std::string& segment) {
  WriterConfig c = test::small_config(segment, 16);
  // Readers call a writer dead after ten missed beats: 10 s here, so a read of the odd slot right
  // after the kill is writer_busy however slow this machine is.
  c.heartbeat_interval = std::chrono::seconds(1);
  return c;
}

std::string qty(const Position& p) {
  return format_decimal(p.values[0], 18);
}

// Whether two accounts share a stripe (then a change to one also holds the other's snapshots).
bool share_stripe(const Reader& r, std::string_view a, std::string_view b) {
  const auto& h = *static_cast<const shm::SegmentHeader*>(r.mapping_base());
  const std::uint64_t mask = shm::account_stripes_for(h.capacity) - 1;
  return (shm::account_hash(a) & mask) == (shm::account_hash(b) & mask);
}

// Every account stripe even and the account epoch even: no change is left open.
bool all_accounts_closed(const Reader& r) {
  const auto& h = *static_cast<const shm::SegmentHeader*>(r.mapping_base());
  const shm::Geometry g = shm::geometry_for(h.capacity);
  const auto* stripes = reinterpret_cast<const std::uint64_t*>(
      static_cast<const char*>(r.mapping_base()) + g.stripes_offset);
  for (std::uint64_t i = 0; i < g.account_stripes; ++i) {
    if (shm::load_relaxed(&stripes[i]) & 1) return false;
  }
  return (shm::load_relaxed(&h.accounts_epoch) & 1) == 0;
}

}  // namespace

class FaultTest : public ::testing::TestWithParam<std::tuple<WriteOp, FaultPoint>> {};

TEST_P(FaultTest, AWriterKilledAtThisStepLeavesTheBeforeOrTheAfterNeverAMix) {
  const auto [op, step] = GetParam();
  test::ScratchSegment seg("fault");
  const pid_t child = test::fork_child([&, op = op, step = step] {
    auto w = Writer::open(config(seg.name()));
    w->upsert(test::must(w->make_update("spot", "alice", "SOL", {{"qty", "1"}, {"fees", "0.5"}})));
    w->upsert(test::must(w->make_update("spot", "bob", "SOL", {{"qty", "7"}})));
    w->upsert(test::must(w->make_update("marks", "alice", "SOL", {{"bid", "140"}})));
    w->heartbeat();
    g_target = step;
    g_armed = true;
    switch (op) {
      case WriteOp::update:
        w->upsert(test::must(w->make_update("spot", "alice", "SOL", {{"qty", "2"}})));
        break;
      case WriteOp::insert:
        w->upsert(
            test::must(w->make_update("spot", "carol", "ETH", {{"qty", "3"}, {"fees", "0.25"}})));
        break;
      case WriteOp::erase:
        w->erase(test::must(w->make_key("spot", "alice", "SOL")));
        break;
    }
    return 0;  // the fault point never fired: the test fails on the exit status
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL)
      << "the writer was not killed at " << name_of(step);

  // Between SW1 and SW4 the slot is odd: a reader gets a bounded, typed answer for it.
  const bool odd = step == FaultPoint::after_w1 || step == FaultPoint::mid_w3;
  const bool done = step == FaultPoint::after_w4 || step == FaultPoint::undo_disarmed;
  Reader r = Reader::open(seg.name());
  Position p;
  // (An insert's slot is reachable through the index only after SW4; an erase tombstones the
  // bucket (XD1) before it frees the slot, so readers already miss it.)
  if (odd && op == WriteOp::update) {
    EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);
  }
  ASSERT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
  // The account's stripe: an update or an erase of alice opens it before its first slot write
  // and the kill leaves it open, so her snapshot is a bounded writer_busy at every step; an
  // insert links carol only after its slot write, so she is not there yet.
  std::vector<Position> snap;
  if (op == WriteOp::insert) {
    EXPECT_EQ(r.snapshot("carol", snap), ReadStatus::not_found);
  } else {
    EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
    EXPECT_TRUE(snap.empty());
  }
  if (!share_stripe(r, "alice", "bob")) {
    ASSERT_EQ(r.snapshot("bob", snap), ReadStatus::ok);
    EXPECT_EQ(snap.size(), 1u);
  }

  auto w = Writer::open(config(seg.name()));
  EXPECT_TRUE(w->stats().reattached);
  EXPECT_TRUE(all_accounts_closed(r)) << "re-attach left a stripe or the epoch odd";
  EXPECT_EQ(r.stats().repairs, odd ? 1u : 0u) << "the successor repaired the wrong number of slots";
  const ReadStatus alice = r.get("spot", "alice", "SOL", p);
  switch (op) {
    case WriteOp::update:
      ASSERT_EQ(alice, ReadStatus::ok)
          << "the position an update was cut in is gone: the undo record was not armed";
      EXPECT_EQ(qty(p), done ? "2.000000000000000000" : "1.000000000000000000");
      EXPECT_EQ(format_decimal(p.values[6], 18), "0.500000000000000000");  // fees, never touched
      break;
    case WriteOp::insert: {
      ASSERT_EQ(alice, ReadStatus::ok);
      const ReadStatus carol = r.get("spot", "carol", "ETH", p);
      if (done) {
        ASSERT_EQ(carol, ReadStatus::ok);
        EXPECT_EQ(qty(p), "3.000000000000000000");
        EXPECT_EQ(format_decimal(p.values[6], 18), "0.250000000000000000");
      } else {
        EXPECT_EQ(carol, ReadStatus::not_found);
      }
      break;
    }
    case WriteOp::erase:
      if (done) {
        EXPECT_EQ(alice, ReadStatus::not_found);
      } else {
        ASSERT_EQ(alice, ReadStatus::ok) << "an erase cut before SW4 lost the position";
        EXPECT_EQ(qty(p), "1.000000000000000000");
      }
      break;
  }
  ASSERT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(qty(p), "7.000000000000000000");
  ASSERT_EQ(r.get("marks", "alice", "SOL", p), ReadStatus::ok);
  // alice's snapshot agrees with get(): her spot position as the repair left it, and her mark.
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), has_value(alice) ? 2u : 1u);
  // The successor goes on writing the same slots.
  const ApplyStatus again =
      w->upsert(test::must(w->make_update("spot", "alice", "SOL", {{"qty", "5"}}))).status;
  EXPECT_TRUE(again == ApplyStatus::updated || again == ApplyStatus::inserted) << to_string(again);
  ASSERT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(qty(p), "5.000000000000000000");
}

// A batch (Writer::apply) holds the stripes of the accounts it touches open from its first write
// to its end. A writer killed between two of its writes leaves them open: snapshots of that
// account answer writer_busy (never the half-applied batch) until a successor re-attaches. The
// successor keeps what the killed batch had applied (there is no batch-level undo: each slot is
// whole, the batch is as far as it got), and closes every stripe.
TEST(FaultBatchTest, AKillBetweenTheWritesOfABatchHoldsTheAccountUntilReattach) {
  test::ScratchSegment seg("fault_batch");
  const pid_t child = test::fork_child([&] {
    auto w = Writer::open(config(seg.name()));
    w->upsert(test::must(w->make_update("spot", "alice", "SOL", {{"qty", "1"}})));
    w->upsert(test::must(w->make_update("spot", "alice", "BTC", {{"qty", "9"}})));
    w->heartbeat();
    g_target = FaultPoint::undo_saved;
    g_skip = 1;  // the batch's first write completes; the kill comes before its second one's SW1
    g_armed = true;
    std::vector<Op> ops;
    ops.emplace_back(test::must(w->make_update("spot", "alice", "SOL", {{"qty", "0"}})));
    ops.emplace_back(test::must(w->make_update("spot", "alice", "BTC", {{"qty", "10"}})));
    w->apply(ops);
    return 0;
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL);
  Reader r = Reader::open(seg.name());
  std::vector<Position> snap;
  Position p;
  // get() serves each position whole: SOL as the batch left it, BTC untouched.
  ASSERT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(qty(p), "0.000000000000000000");
  ASSERT_EQ(r.get("spot", "alice", "BTC", p), ReadStatus::ok);
  EXPECT_EQ(qty(p), "9.000000000000000000");
  // A snapshot never shows that half-applied batch while it may still be completed.
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  EXPECT_FALSE(all_accounts_closed(r));
  auto w = Writer::open(config(seg.name()));
  EXPECT_TRUE(w->stats().reattached);
  EXPECT_TRUE(all_accounts_closed(r));
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  ASSERT_EQ(snap.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(
    EachStepOfEachWrite, FaultTest,
    ::testing::Combine(::testing::Values(WriteOp::update, WriteOp::insert, WriteOp::erase),
                       ::testing::Values(FaultPoint::undo_saved, FaultPoint::undo_armed,
                                         FaultPoint::after_w1, FaultPoint::mid_w3,
                                         FaultPoint::after_w4, FaultPoint::undo_disarmed)),
    [](const auto& param_info) {
      return std::string(name_of(std::get<0>(param_info.param))) + "KilledAt" +
             name_of(std::get<1>(param_info.param));
    });
