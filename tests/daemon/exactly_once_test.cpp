// Exactly once across a failover and a warm start (docs/exactly-once.md): a producer that never
// learnt what a killed writer did resends everything to the writer that takes over, and every
// fill ends applied once. The reference is the same fills applied once by a writer that was
// never killed; positions are compared field by field.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "daemon/daemon_util.hpp"
#include "poscache/format.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "redis/redis_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using poscache::test::Daemon;
using poscache::test::seg_flag;
using poscache::test::TempDir;

namespace xonce {  // named: the test files share one unity translation unit

constexpr int kAccounts = 6;
const char* const kFields[] = {"qty", "avg_price", "cost_basis", "realized_pnl", "fees"};

// Fill i (1-based): a trader's buys and sells of SOL at prices moving by a quarter, with a fee.
struct FillSpec {
  std::string account, qty, price, fee, trade_id;
  Side side;
};
std::string account_name(int a) {
  return "w" + std::to_string(a);
}

FillSpec fill_of(int i) {
  FillSpec f;
  f.account = account_name(i % kAccounts);
  f.side = i % 5 == 4 ? Side::sell : Side::buy;
  f.qty = i % 5 == 4 ? "3" : "1.5";
  const int quarters = 400 + (i * 7) % 160;  // 100.00 to 139.75
  f.price = std::to_string(quarters / 4) + "." + std::to_string(quarters % 4 * 25);
  f.fee = "0.01";
  f.trade_id = "F-" + std::to_string(i);
  return f;
}

PushResult push(Producer& p, int i) {
  const FillSpec f = fill_of(i);
  return p.fill("spot", f.account, "SOL", f.side, f.qty, f.price, f.fee, f.trade_id, 10s);
}

std::string field(Reader& r, const std::string& account, const char* name) {
  const NamespaceId id = *r.namespace_id("spot");
  Position p;
  if (r.get(id, account, "SOL", p) != ReadStatus::ok) return "absent";
  return format_field(r.namespace_info(id), p, *r.namespace_info(id).field_index(name));
}

std::unique_ptr<Producer> producer(const test::ScratchSegment& seg, const char* name) {
  ProducerConfig pc;
  pc.segment = seg.name();
  pc.name = name;
  return Producer::open(pc);
}

// Pushes fills [from, to] and waits until all are applied; returns the outcome of each.
std::vector<Outcome> push_all(Producer& p, int from, int to) {
  std::vector<Outcome> out;
  for (int base = from; base <= to; base += 500) {
    const int last = std::min(to, base + 499);
    std::vector<std::uint64_t> seqs;
    for (int i = base; i <= last; ++i) {
      const PushResult r = push(p, i);
      EXPECT_EQ(r.status, PushStatus::ok) << "fill " << i << ": " << p.error();
      seqs.push_back(r.seq);
    }
    EXPECT_EQ(p.wait_applied(seqs.back(), 30s), WaitStatus::done);
    for (std::uint64_t s : seqs) out.push_back(p.outcome(s));
  }
  return out;
}

// The same fills applied once, by a writer never killed.
void expect_equals_reference(const test::ScratchSegment& seg, int fills) {
  const test::ScratchSegment ref("xref");
  Daemon d(seg_flag(ref) + " --no-redis -n spot:trading --capacity 4096");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  auto p = producer(ref, "reference");
  for (Outcome o : push_all(*p, 1, fills)) ASSERT_EQ(o, Outcome::applied);
  Reader want = Reader::open(ref.name());
  Reader got = Reader::open(seg.name());
  for (int a = 0; a < kAccounts; ++a) {
    for (const char* f : kFields)
      EXPECT_EQ(field(got, account_name(a), f), field(want, account_name(a), f))
          << account_name(a) << " " << f;
  }
}

std::string redis_flags(const test::RedisServer& srv) {
  return " --redis-host 127.0.0.1 --redis-port " + std::to_string(srv.port()) +
         " -n spot:trading --capacity 4096";
}

// The writer is killed with -9 while fills flow, after Redis acknowledged about half of them.
// The standby takes over and the producer resends every fill, from the first: each one Redis
// acknowledged is answered duplicate, and every position equals the fills applied once. (With
// the trade ids left out of Redis, every acknowledged fill was applied a second time.)
TEST(ExactlyOnceTest, FillsResentToAStandbyPromotedAfterAKillAreAppliedOnce) {
  test::RedisServer srv;
  const test::ScratchSegment main_seg("xmain"), standby("xstandby");
  constexpr int kFills = 4000;
  auto writer = std::make_unique<Daemon>(seg_flag(main_seg) + redis_flags(srv));
  ASSERT_TRUE(writer->wait_for("ingest socket")) << writer->log();
  Daemon stand(seg_flag(standby) + redis_flags(srv) + " --standby");
  ASSERT_TRUE(stand.wait_for("tailing poscache:v1:@changes")) << stand.log();
  auto pw = producer(main_seg, "trader");
  std::atomic<bool> stop{false};
  std::thread trader([&] {
    for (int i = 1; i <= kFills && !stop; ++i)
      if (push(*pw, i).status != PushStatus::ok) break;  // the writer is gone
  });
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (pw->stats().synced < kFills / 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(200us);
  writer.reset();  // kill -9, fills in flight
  stop = true;
  trader.join();
  const ProducerStats at_kill = pw->stats();
  ASSERT_GE(at_kill.synced, static_cast<std::uint64_t>(kFills / 2));
  ASSERT_TRUE(stand.wait_for("standby: promoted: this process writes")) << stand.log();
  ASSERT_TRUE(stand.wait_for("ingest socket")) << stand.log();
  EXPECT_NE(stand.log().find("fill trade ids: "), std::string::npos) << stand.log();
  auto ps = producer(standby, "trader");
  const std::vector<Outcome> again = push_all(*ps, 1, kFills);
  std::uint64_t duplicates = 0, applied = 0, acked_applied_again = 0;
  for (std::size_t i = 0; i < again.size(); ++i) {
    if (i < at_kill.synced && again[i] != Outcome::duplicate) ++acked_applied_again;
    duplicates += again[i] == Outcome::duplicate;
    applied += again[i] == Outcome::applied;
  }
  EXPECT_EQ(acked_applied_again, 0u) << "of " << at_kill.synced << " fills Redis acknowledged";
  EXPECT_EQ(duplicates + applied, static_cast<std::uint64_t>(kFills));
  EXPECT_GE(duplicates, at_kill.synced);
  EXPECT_LE(duplicates, at_kill.applied);  // nothing the dead writer never applied
  expect_equals_reference(standby, kFills);
}

// The same across a warm start on a fresh segment: a new generation has no window of its own,
// so what it refuses comes from Redis.
TEST(ExactlyOnceTest, FillsResentAfterAFreshWarmStartAreDuplicates) {
  test::RedisServer srv;
  const test::ScratchSegment seg("xfresh");
  constexpr int kFills = 1500;
  {
    Daemon d(seg_flag(seg) + redis_flags(srv));
    ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
    auto p = producer(seg, "trader");
    for (Outcome o : push_all(*p, 1, kFills)) ASSERT_EQ(o, Outcome::applied);
    ASSERT_EQ(p->wait_synced(p->stats().pushed, 30s), WaitStatus::done);
    d.signal(SIGKILL);
    d.wait();
  }
  Daemon d(seg_flag(seg) + redis_flags(srv) + " --fresh");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  EXPECT_NE(d.log().find("fill trade ids: " + std::to_string(kFills) + " in redis"),
            std::string::npos)
      << d.log();
  auto p = producer(seg, "trader");
  for (Outcome o : push_all(*p, 1, kFills)) ASSERT_EQ(o, Outcome::duplicate);
  expect_equals_reference(seg, kFills);
}

// Fills from a Redis stream (no trade ids): the writer consuming it is killed with -9 with
// entries applied and not yet acknowledged (XACK); the standby, in the same consumer group,
// takes them over. Those whose effect Redis holds are refused as stale by the entry id their
// position carries (source_seq, mirrored with it), the others are applied: every position ends
// at its entries applied once.
TEST(ExactlyOnceTest, StreamEntriesTheKilledWriterAppliedAreNotAppliedAgainByTheStandby) {
  test::RedisServer srv;
  const test::ScratchSegment main_seg("xsmain"), standby("xsstandby");
  constexpr int kEntries = 6000;
  const TempDir dir;  // both consume the stream in one group, as a desk would set it up
  const std::string flags =
      redis_flags(srv) + " --config " +
      dir.file("desk.toml", "[ingest]\nstreams = [\"desk:fills\"]\nstream_group = \"desk\"\n");
  auto writer = std::make_unique<Daemon>(seg_flag(main_seg) + flags);
  ASSERT_TRUE(writer->wait_for("stream desk:fills")) << writer->log();
  Daemon stand(seg_flag(standby) + flags + " --standby");
  ASSERT_TRUE(stand.wait_for("tailing poscache:v1:@changes")) << stand.log();
  std::thread publisher([&] {
    auto c = srv.client();
    for (int i = 0; i < kEntries; ++i) {
      const std::string line = R"({"op":"fill","ns":"spot","account":")" +
                               account_name(i % kAccounts) +
                               R"(","instrument":"SOL","side":"buy","qty":"1","price":")" +
                               std::to_string(100 + i % 13) + "\"}";
      test::cmd(c, {"XADD", "desk:fills", "*", "cmd", line});
      if (i % 100 == 99) std::this_thread::sleep_for(2ms);  // a feed, not a burst
    }
  });
  auto total = [](const test::ScratchSegment& seg) {
    Reader r = Reader::open(seg.name());
    long n = 0;
    for (int a = 0; a < kAccounts; ++a) {
      const std::string q = field(r, account_name(a), "qty");
      if (q != "absent") n += std::stol(q.substr(0, q.find('.')));
    }
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (total(main_seg) < kEntries / 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  writer.reset();  // kill -9 while entries flow
  ASSERT_TRUE(stand.wait_for("standby: promoted: this process writes")) << stand.log();
  publisher.join();
  while (total(standby) < kEntries && std::chrono::steady_clock::now() < deadline + 60s)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(300ms);  // anything applied twice would show by now
  Reader r = Reader::open(standby.name());
  for (int a = 0; a < kAccounts; ++a) {
    const int entries = kEntries / kAccounts + (a < kEntries % kAccounts ? 1 : 0);
    EXPECT_EQ(field(r, account_name(a), "qty"), std::to_string(entries) + ".000000000000000000")
        << account_name(a) << "\n"
        << stand.log();
  }
}

}  // namespace xonce
