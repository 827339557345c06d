// Read-through (docs/read-through.md): readers ask through their own rings, the writer keeps one
// request per key in flight, refreshers answer over the socket, and an answer never overwrites a
// newer write. Each test runs a real poscache-writer and real refresher clients.
#include "shm/refresh.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "daemon/daemon_util.hpp"
#include "http/http_client.hpp"
#include "poscache/format.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "poscache/refresher.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using poscache::test::Daemon;
using poscache::test::seg_flag;

namespace readthrough {  // named: the test files share one unity translation unit

RefresherConfig refresher_config(const std::string& segment, const std::string& name) {
  RefresherConfig c;
  c.segment = segment;
  c.name = name;
  c.namespaces = {"acct"};
  return c;
}
ProducerConfig producer_config(const std::string& segment, const std::string& name) {
  ProducerConfig c;
  c.segment = segment;
  c.name = name;
  return c;
}

// A broker API in miniature: positions by (account, instrument), each fetch counted; answers
// after `delay`.
struct BrokerSim {
  std::atomic<int> fetches{0};
  std::atomic<bool> stop{false};
  std::chrono::milliseconds delay{0};
  std::function<void(Refresher&, const FetchRequest&)> answer;  // default: the position below
  std::thread thread;

  void run(const std::string& segment, const std::string& name = "broker-sim") {
    auto r = Refresher::open(refresher_config(segment, name));
    thread = std::thread([this, r = std::shared_ptr<Refresher>(std::move(r))] {
      try {
        while (!stop.load()) {
          for (const FetchRequest& q : r->next(50ms)) {
            fetches.fetch_add(1);
            std::this_thread::sleep_for(delay);
            if (answer) {
              answer(*r, q);
              continue;
            }
            if (q.rebuild()) {  // the broker's accounts, two positions a page, three pages
              for (int page = 0; page < 3; ++page) {
                const std::string acc = "R-" + std::to_string(page);
                const std::vector<FetchedPosition> list = {
                    {acc, "AAPL", {{"qty", "1"}, {"avg_price", "190"}}},
                    {acc, "MSFT", {{"qty", "2"}, {"avg_price", "410.5"}}}};
                r->positions(q, list, page < 2);
              }
              continue;
            }
            if (q.instrument == "NONE") {
              r->absent(q);
              continue;
            }
            // An account's holding: 10 shares at 101.5, as the broker reports it.
            r->upsert(q, {{"qty", "10"}, {"avg_price", "101.5"}, {"cost_basis", "1015"}});
          }
        }
      } catch (const Error&) {  // the writer went away: the test is over
      }
    });
  }
  ~BrokerSim() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

std::string args(const test::ScratchSegment& seg, const std::string& refresh = "acct:both:2s:2") {
  return seg_flag(seg) +
         " --capacity 4096 --no-generate --no-redis --no-http -n acct:trading:300ms --refresh " +
         refresh + " --stats-interval 1h";
}

std::string field(const Reader& r, const Position& p, const char* name) {
  const NamespaceInfo& info = r.namespace_info(p.ns);
  std::string t = format_field(info, p, *info.field_index(name));  // "10.000…": as "10"
  if (t.find('.') != std::string::npos) {
    t.erase(t.find_last_not_of('0') + 1);
    if (t.back() == '.') t.pop_back();
  }
  return t;
}

TEST(ReadThroughTest, AMissIsFetchedOnceThenReadAtGetCost) {
  test::ScratchSegment seg("rt1");
  Daemon d(args(seg));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  BrokerSim broker;
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  Reader r = Reader::open(seg.name());
  ASSERT_TRUE(r.refresh_available()) << r.refresh_unavailable_because();
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  FetchResult f = r.get_or_fetch(ns, "A-1001", "AAPL", p, 5s);
  ASSERT_EQ(f.status, ReadStatus::ok) << to_string(f.reason) << "\n" << d.log();
  EXPECT_EQ(f.reason, FetchReason::fetched);
  EXPECT_EQ(field(r, p, "qty"), "10");
  EXPECT_EQ(field(r, p, "avg_price"), "101.5");
  f = r.get_or_fetch(ns, "A-1001", "AAPL", p, 5s);  // fresh now: no request
  EXPECT_EQ(f.reason, FetchReason::cached);
  EXPECT_EQ(broker.fetches.load(), 1);
  // A key the broker does not have: absent, and remembered (no second fetch).
  f = r.get_or_fetch(ns, "A-1001", "NONE", p, 5s);
  EXPECT_EQ(f.status, ReadStatus::not_found);
  EXPECT_EQ(f.reason, FetchReason::absent);
  f = r.get_or_fetch(ns, "A-1001", "NONE", p, 5s);
  EXPECT_EQ(f.reason, FetchReason::absent);
  EXPECT_EQ(broker.fetches.load(), 2);
  EXPECT_EQ(r.pending(ns, "A-1001", "NONE").state, PendingState::absent);
}

TEST(ReadThroughTest, AStaleReadAsksOnceAndALaterReadIsFresh) {
  test::ScratchSegment seg("rt2");
  Daemon d(args(seg, "acct:stale:2s:2"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  BrokerSim broker;
  broker.delay = 50ms;  // the demo's broker API
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  auto prod = Producer::open(producer_config(seg.name(), "seed"));
  auto u = prod->make_update("acct", "A-7", "MSFT", {{"qty", "3"}, {"avg_price", "400"}});
  const PushResult pr = prod->push(*u, 1s);
  ASSERT_EQ(prod->wait_applied(pr.seq, 5s), WaitStatus::done);
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  std::this_thread::sleep_for(400ms);  // past stale_after (300 ms)
  Position p;
  ASSERT_EQ(r.get(ns, "A-7", "MSFT", p), ReadStatus::stale);         // served at once, stale; asks
  for (int i = 0; i < 1000; ++i) (void)r.get(ns, "A-7", "MSFT", p);  // no more asks
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (r.get(ns, "A-7", "MSFT", p) != ReadStatus::ok &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(r.get(ns, "A-7", "MSFT", p), ReadStatus::ok);
  EXPECT_EQ(field(r, p, "qty"), "10");  // the broker's answer replaced the stale copy
  EXPECT_EQ(broker.fetches.load(), 1);
  EXPECT_EQ(r.refresh_stats()->requests[static_cast<int>(RefreshReason::stale)], 1u);
}

// 8 processes read one stale key 125 times each while a slow refresher fetches it: one fetch.
TEST(ReadThroughTest, AStampedeOfEightProcessesCostsOneFetch) {
  test::ScratchSegment seg("rt3");
  Daemon d(args(seg, "acct:stale:5s:2"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  BrokerSim broker;
  broker.delay = 200ms;
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  auto prod = Producer::open(producer_config(seg.name(), "seed"));
  const PushResult pr = prod->push(*prod->make_update("acct", "A-9", "NVDA", {{"qty", "1"}}), 1s);
  ASSERT_EQ(prod->wait_applied(pr.seq, 5s), WaitStatus::done);
  std::this_thread::sleep_for(400ms);
  // The writer stopped while they read: no process can see another's ask as pending, so each
  // asks, and the 8 asks meet in the writer, which must send one.
  d.signal(SIGSTOP);
  std::vector<pid_t> kids;
  for (int k = 0; k < 8; ++k) {
    kids.push_back(test::fork_child([&] {
      Reader r = Reader::open(seg.name());
      const NamespaceId ns = *r.namespace_id("acct");
      Position p;
      int stale = 0;
      for (int i = 0; i < 125; ++i) stale += r.get(ns, "A-9", "NVDA", p) == ReadStatus::stale;
      return stale > 0 ? 0 : 3;  // each saw it stale at least once (asked)
    }));
  }
  for (pid_t k : kids) EXPECT_EQ(test::wait_child(k), 0);
  d.signal(SIGCONT);
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (r.get(ns, "A-9", "NVDA", p) != ReadStatus::ok &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(300ms);  // any second fetch would have gone out by now
  EXPECT_EQ(broker.fetches.load(), 1) << d.log();
  const RefreshStats st = *r.refresh_stats();
  const std::uint64_t asks = st.requests[static_cast<int>(RefreshReason::stale)];
  EXPECT_GE(asks, 8u);  // (and this process's reads, which asked too)
  EXPECT_EQ(st.deduplicated, asks - 1);
}

// A fill lands while a refresh of its key is in flight: the refresher's older answer is dropped
// and counted, and the fill stays.
TEST(ReadThroughTest, AFillDuringARefreshDropsTheAnswer) {
  test::ScratchSegment seg("rt4");
  Daemon d(args(seg));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  auto prod = Producer::open(producer_config(seg.name(), "fills"));
  std::atomic<bool> filled{false};
  BrokerSim broker;
  broker.answer = [&](Refresher& rf, const FetchRequest& q) {
    // The fill goes in after the request went out and before the answer comes back.
    const PushResult fr =
        prod->fill("acct", q.account, q.instrument, Side::buy, "5", "99", "0", "T-1", 1s);
    filled = prod->wait_applied(fr.seq, 5s) == WaitStatus::done;
    rf.upsert(q, {{"qty", "10"}, {"avg_price", "101.5"}});
  };
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  const FetchResult f = r.get_or_fetch(ns, "A-3", "TSLA", p, 5s);
  ASSERT_TRUE(filled.load());
  ASSERT_EQ(f.status, ReadStatus::ok) << to_string(f.reason);
  EXPECT_EQ(field(r, p, "qty"), "5");  // the fill's, not the broker's 10
  EXPECT_EQ(field(r, p, "avg_price"), "99");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (r.pending(ns, "A-3", "TSLA").state == PendingState::pending &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(2ms);
  EXPECT_EQ(r.pending(ns, "A-3", "TSLA").state, PendingState::superseded);
  EXPECT_EQ(r.refresh_stats()->outcomes[static_cast<int>(PendingState::superseded)], 1u);
  (void)r.get(ns, "A-3", "TSLA", p);
  EXPECT_EQ(field(r, p, "qty"), "5");
}

// A refresher that never answers: its try times out and the request goes to the other one, well
// within the reader's timeout; a reader with a shorter timeout than the writer's gets `timeout`.
TEST(ReadThroughTest, AHungRefresherIsPassedOverAndNoReaderWaitsPastItsTimeout) {
  test::ScratchSegment seg("rt5");
  Daemon d(args(seg, "acct:miss:300ms:2"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  // The hung one registers first, and with no request in flight it is as good as the other.
  auto hung = Refresher::open(refresher_config(seg.name(), "hung"));
  ASSERT_TRUE(d.wait_for("refresher 'hung'")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  const auto t0 = std::chrono::steady_clock::now();
  FetchResult f = r.get_or_fetch(ns, "A-5", "AMZN", p, 100ms);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(f.status, ReadStatus::not_found);
  EXPECT_EQ(f.reason, FetchReason::timeout);
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 5s);  // bounded by its own timeout (generously: a loaded machine)
  BrokerSim broker;
  broker.run(seg.name(), "healthy");
  ASSERT_TRUE(d.wait_for("refresher 'healthy'")) << d.log();
  f = r.get_or_fetch(ns, "A-5", "GOOG", p, 10s);
  EXPECT_EQ(f.status, ReadStatus::ok) << to_string(f.reason) << "\n" << d.log();
  // The first key's try on the hung one times out (300 ms) and goes to the healthy one.
  f = r.get_or_fetch(ns, "A-5", "AMZN", p, 10s);
  EXPECT_EQ(f.status, ReadStatus::ok) << to_string(f.reason) << "\n" << d.log();
  EXPECT_GE(r.refresh_stats()->timeouts, 1u);
  (void)hung->next(1ms);
}

// A refresher killed mid-request: the writer notices the connection go and asks the other.
TEST(ReadThroughTest, ARefresherKilledMidRequestIsReplaced) {
  test::ScratchSegment seg("rt6");
  Daemon d(args(seg, "acct:miss:30s:2"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  const pid_t doomed = test::fork_child([&] {
    auto rf = Refresher::open(refresher_config(seg.name(), "doomed"));
    for (;;) (void)rf->next(1s);  // takes requests, never answers
    return 0;
  });
  ASSERT_TRUE(d.wait_for("refresher 'doomed'")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  ASSERT_EQ(r.request(ns, "A-6", "META", RefreshReason::miss), RequestStatus::asked);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (r.pending(ns, "A-6", "META").state != PendingState::pending &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(2ms);
  ASSERT_EQ(r.pending(ns, "A-6", "META").state, PendingState::pending);
  BrokerSim broker;
  broker.run(seg.name(), "survivor");
  ASSERT_TRUE(d.wait_for("refresher 'survivor'")) << d.log();
  ::kill(doomed, SIGKILL);
  test::wait_child(doomed);
  Position p;
  const FetchResult f = r.get_or_fetch(ns, "A-6", "META", p, 10s);  // well before the 30 s timeout
  EXPECT_EQ(f.status, ReadStatus::ok) << to_string(f.reason) << "\n" << d.log();
  EXPECT_EQ(broker.fetches.load(), 1);
  EXPECT_TRUE(d.wait_for("refresher 'doomed'")) << d.log();
  EXPECT_NE(d.log().find("is gone; its requests are retried"), std::string::npos);
}

// Answers the writer cannot use are refused with a reason and retried; nothing of them lands.
TEST(ReadThroughTest, GarbageAnswersAreRefusedWithAReason) {
  test::ScratchSegment seg("rt7");
  Daemon d(args(seg, "acct:miss:5s:5"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  auto rf = Refresher::open(refresher_config(seg.name(), "sloppy"));
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  ASSERT_EQ(r.request(ns, "A-8", "IBM", RefreshReason::miss), RequestStatus::asked);
  std::vector<std::string> refusals;
  auto next_request = [&] {
    for (int i = 0; i < 100; ++i) {
      auto qs = rf->next(100ms);
      if (!qs.empty()) return qs.front();
    }
    ADD_FAILURE() << "no request came";
    return FetchRequest{};
  };
  auto refusal_after = [&](auto&& send) {
    FetchRequest q = next_request();
    const std::uint64_t before = rf->refused();
    send(q);
    for (int i = 0; i < 100 && rf->refused() == before; ++i) (void)rf->next(10ms);
    refusals.push_back(rf->last_refusal());
  };
  // A float, a field the schema lacks, a key not asked, an account not asked.
  refusal_after([&](const FetchRequest& q) { rf->upsert(q, {{"qty", "1e3"}}); });
  refusal_after([&](const FetchRequest& q) { rf->upsert(q, {{"quantity", "1"}}); });
  refusal_after([&](const FetchRequest& q) {
    rf->positions(q, std::vector<FetchedPosition>{{"OTHER", "IBM", {{"qty", "1"}}}});
  });
  ASSERT_EQ(refusals.size(), 3u);
  EXPECT_NE(refusals[0].find("qty"), std::string::npos) << refusals[0];
  EXPECT_NE(refusals[1].find("quantity"), std::string::npos) << refusals[1];
  EXPECT_NE(refusals[2].find("was not asked"), std::string::npos) << refusals[2];
  // Then a good answer: the request was kept alive through its retries.
  FetchRequest q = next_request();
  rf->upsert(q, {{"qty", "7"}});
  Position p;
  const FetchResult f = r.get_or_fetch(ns, "A-8", "IBM", p, 5s);
  EXPECT_EQ(f.status, ReadStatus::ok) << to_string(f.reason);
  EXPECT_EQ(field(r, p, "qty"), "7");
  EXPECT_EQ(r.get(ns, "OTHER", "IBM", p), ReadStatus::not_found);  // nothing of the refused
  EXPECT_EQ(r.refresh_stats()->refused, 3u);
}

// A refresher over the socket by hand, as any language would: lines in, lines out.
class RawRefresher {
 public:
  explicit RawRefresher(const std::string& segment) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string path = "/dev/shm/" + segment + ".sock";
    std::memcpy(a.sun_path, path.c_str(), path.size());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << path;
  }
  ~RawRefresher() { ::close(fd_); }
  void send(const std::string& line) {
    const std::string l = line + "\n";
    ASSERT_EQ(::write(fd_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
  }
  std::string line() {  // the next line, or "" after 5 s
    for (int i = 0; i < 500; ++i) {
      if (const auto nl = in_.find('\n'); nl != std::string::npos) {
        std::string l = in_.substr(0, nl);
        in_.erase(0, nl + 1);
        return l;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) == 1) {
        char buf[4096];
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n <= 0) return "";
        in_.append(buf, static_cast<std::size_t>(n));
      }
    }
    return "";
  }

 private:
  int fd_ = -1;
  std::string in_;
};

TEST(ReadThroughTest, MalformedLinesFromARefresherAreRefusedAndTheWriterLivesOn) {
  test::ScratchSegment seg("rt9");
  Daemon d(args(seg, "acct:miss:5s:5"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  RawRefresher raw(seg.name());
  raw.send(R"({"op":"refresher","namespaces":["acct"],"name":"raw"})");
  EXPECT_NE(raw.line().find("registered"), std::string::npos);
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  ASSERT_EQ(r.request(ns, "A-10", "ORCL", RefreshReason::miss), RequestStatus::asked);
  // Each refused answer is the try's error: the request comes again (a backoff later), and the
  // next garbage answers that try. Lines naming no request in flight are refused and cost none.
  auto next_fetch_id = [&] {
    std::string l;
    do l = raw.line();
    while (!l.empty() && l.find(R"("op":"fetch")") == std::string::npos);
    const std::size_t at = l.find(R"("request":)") + 10;
    return l.empty() ? std::string("0") : l.substr(at, l.find_first_of(",}", at) - at);
  };
  const std::pair<std::string, std::string> garbage[] = {
      {R"(,"positions":[],"more":"yes"})", "more"},
      {R"(,"upsert":{"qty":12.5}})", "floating-point"},
      {R"(,"upsert":{"qty":"1"},"absent":true})", "one of"},
      {R"(,"upsert":["qty","1"]})", "fields"},
  };
  for (const auto& [tail, reason] : garbage) {
    const std::string id = next_fetch_id();
    for (const auto& [line, why] :
         {std::pair<std::string, std::string>{"this is not JSON", "JSON"},
          {R"({"op":"answer","request":"x","absent":true})", "request"},
          {R"({"op":"answer","request":999999,"absent":true})", "not in flight"},
          {R"({"op":"answer","request":)" + id + tail, reason}}) {
      raw.send(line);
      const std::string reply = raw.line();
      EXPECT_NE(reply.find("rejected"), std::string::npos) << line << " -> " << reply;
      EXPECT_NE(reply.find(why), std::string::npos) << line << " -> " << reply;
    }
  }
  EXPECT_EQ(::kill(d.pid(), 0), 0) << "the writer died\n" << d.log();
  Position p;
  EXPECT_EQ(r.get(ns, "A-10", "ORCL", p), ReadStatus::not_found);  // nothing of them applied
}

// poscache-feed rebuild asks for a namespace; the refresher answers it page by page; --wait shows
// the progress and the end. A writer configured with rebuild_on_empty asks its first refresher.
TEST(ReadThroughTest, ARebuildReloadsANamespaceOnDemandAndOnAnEmptyStart) {
  test::ScratchSegment seg("rt11");
  test::TempDir dir;
  const std::string cfg = dir.file("w.toml", R"([[namespace]]
name = "acct"
preset = "trading"
refresh = "miss"
rebuild_on_empty = true
)");
  Daemon d(seg_flag(seg) + " -c " + cfg + " --capacity 4096 --no-generate --no-redis --no-http");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  ASSERT_TRUE(d.wait_for("a rebuild is asked of its first refresher")) << d.log();
  BrokerSim broker;
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresh: rebuild of 'acct': answered, 6 positions")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  ASSERT_EQ(r.get(ns, "R-2", "MSFT", p), ReadStatus::ok);
  EXPECT_EQ(field(r, p, "avg_price"), "410.5");
  // On demand: after an invalidation of the namespace.
  ASSERT_EQ(
      test::run_cli(std::string(POSCACHE_FEED_BIN) + " -s " + seg.name() + " invalidate --ns acct")
          .code,
      0);
  ASSERT_EQ(r.get(ns, "R-2", "MSFT", p), ReadStatus::not_found);
  const test::CliRun run = test::run_cli(std::string(POSCACHE_FEED_BIN) + " -s " + seg.name() +
                                         " rebuild acct --wait 30s");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("rebuild done: 6 positions"), std::string::npos) << run.out;
  EXPECT_EQ(r.get(ns, "R-1", "AAPL", p), ReadStatus::ok);
  EXPECT_EQ(r.refresh_stats()->rebuilds_running, 0u);
  // A namespace nobody serves: refused, naming it.
  const test::CliRun none =
      test::run_cli(std::string(POSCACHE_FEED_BIN) + " -s " + seg.name() + " rebuild spot");
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.out.find("unknown namespace"), std::string::npos) << none.out;
}

// Refresh-ahead: a fresh read in the last part of stale_after asks, so a hot key is refreshed
// before it turns stale and its readers never see it stale.
TEST(ReadThroughTest, RefreshAheadKeepsAHotKeyFresh) {
  test::ScratchSegment seg("rt12");
  test::TempDir dir;
  const std::string cfg = dir.file("w.toml", R"([[namespace]]
name = "acct"
preset = "trading"
stale_after = "1s"
refresh = "stale"
refresh_ahead = 0.5
)");
  Daemon d(seg_flag(seg) + " -c " + cfg + " --capacity 4096 --no-generate --no-redis --no-http");
  ASSERT_TRUE(d.wait_for("ahead at 50% of stale_after")) << d.log();
  BrokerSim broker;
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  auto prod = Producer::open(producer_config(seg.name(), "seed"));
  const PushResult pr = prod->push(*prod->make_update("acct", "H-1", "SPY", {{"qty", "3"}}), 1s);
  ASSERT_EQ(prod->wait_applied(pr.seq, 5s), WaitStatus::done);
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  int stale = 0;
  const auto until = std::chrono::steady_clock::now() + 2500ms;  // 2.5 stale_afters, read hot
  while (std::chrono::steady_clock::now() < until) {
    stale += r.get(ns, "H-1", "SPY", p) == ReadStatus::stale;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(stale, 0);
  EXPECT_EQ(field(r, p, "qty"), "10");  // the refresher's answer
  const RefreshStats st = *r.refresh_stats();
  EXPECT_GE(st.requests[static_cast<int>(RefreshReason::ahead)], 2u);  // at ~0.5 s and ~1 s
  EXPECT_EQ(st.requests[static_cast<int>(RefreshReason::stale)], 0u);
}

// A source that fails: the key is `failed` after its tries, and that failure stands for a try's
// timeout (the reads that follow do not ask again at once); a forced fetch right after a fetch
// goes out (it is not taken for one the previous answer served).
TEST(ReadThroughTest, AFailureStandsForATimeoutAndAForcedFetchAfterAFetchGoesOut) {
  test::ScratchSegment seg("rt13");
  Daemon d(args(seg, "acct:miss:1s:0"));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  BrokerSim broker;
  broker.answer = [](Refresher& rf, const FetchRequest& q) {
    if (q.instrument == "DOWN")
      rf.error(q, "broker 503");
    else
      rf.upsert(q, {{"qty", std::to_string(q.id)}});  // each answer differs
  };
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  Position p;
  EXPECT_EQ(r.get_or_fetch(ns, "F-1", "DOWN", p, 5s).reason, FetchReason::failed);
  for (int i = 0; i < 100; ++i) (void)r.get(ns, "F-1", "DOWN", p);  // misses: asked no more
  EXPECT_EQ(r.get_or_fetch(ns, "F-1", "DOWN", p, 5s).reason, FetchReason::failed);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(broker.fetches.load(), 1);
  for (int i = 0; i < 50; ++i) {
    const std::string ins = "K" + std::to_string(i);
    const FetchResult a = r.get_or_fetch(ns, "F-2", ins, p, 5s);
    const std::uint64_t v = p.version;
    const FetchResult b = r.get_or_fetch(ns, "F-2", ins, p, 5s, true);
    ASSERT_EQ(a.reason, FetchReason::fetched) << i;
    ASSERT_EQ(b.reason, FetchReason::fetched) << i << ": " << to_string(b.reason);
    ASSERT_GT(p.version, v) << i;
  }
}

int listening_port(const Daemon& d) {
  const std::string marker = "http: listening on 127.0.0.1:";
  if (!d.wait_for(marker)) return 0;
  const std::string log = d.log();
  return std::atoi(log.c_str() + log.find(marker) + marker.size());
}

// The HTTP API reads through: ?timeout= waits for a missing key's fetch, ?refresh=true forces
// one; answers say stale, age_seconds and cached; the metrics count it all.
TEST(ReadThroughTest, HttpReadsThroughAndForcesARefresh) {
  test::ScratchSegment seg("rt10");
  const std::string a = seg_flag(seg) +
                        " --capacity 4096 --no-generate --no-redis --http 127.0.0.1:0 "
                        "-n acct:trading:300ms --refresh acct:both:2s:2 --stats-interval 1h";
  Daemon d(a);
  const int port = listening_port(d);
  ASSERT_GT(port, 0) << d.log();
  BrokerSim broker;
  broker.run(seg.name());
  ASSERT_TRUE(d.wait_for("refresher 'broker-sim'")) << d.log();
  const std::string path = "/v1/positions/acct/A-20/AAPL";
  test::HttpReply h = test::http_get(port, path + "?timeout=5s");
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_NE(h.body.find(R"("refresh":"fetched")"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find(R"("cached":false)"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find(R"("qty":"10)"), std::string::npos) << h.body;
  h = test::http_get(port, path);
  EXPECT_EQ(h.status, 200);
  EXPECT_NE(h.body.find(R"("cached":true)"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find(R"("stale":false)"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find(R"("age_seconds":)"), std::string::npos) << h.body;
  h = test::http_get(port, path + "?refresh=true");
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_NE(h.body.find(R"("refresh":"fetched")"), std::string::npos) << h.body;
  EXPECT_EQ(broker.fetches.load(), 2);
  h = test::http_get(port, "/v1/positions/acct/A-20/NONE?timeout=5s");
  EXPECT_EQ(h.status, 404) << h.body;
  EXPECT_NE(h.body.find(R"("refresh":"absent")"), std::string::npos) << h.body;
  for (const char* bad : {"?refresh=maybe", "?timeout=forever", "?timeout=1h", "?colour=red"}) {
    h = test::http_get(port, path + bad);
    EXPECT_EQ(h.status, 400) << bad << ": " << h.body;
  }
  const std::string m = test::http_get(port, "/metrics").body;
  EXPECT_NE(m.find("poscache_refresh_requests_total{reason=\"forced\"} 1\n"), std::string::npos)
      << m;
  EXPECT_NE(m.find("poscache_refreshers 1\n"), std::string::npos);
  EXPECT_NE(m.find("poscache_refresh_outcomes_total{outcome=\"absent\"} 1\n"), std::string::npos);
  EXPECT_NE(test::http_get(port, "/health").body.find(R"("refreshers":1)"), std::string::npos);
  EXPECT_NE(test::http_get(port, "/v1/stats").body.find(R"("deduplicated":)"), std::string::npos);
  const test::CliRun st =
      test::run_cli(std::string(POSCACHE_INSPECT_BIN) + " -s " + seg.name() + " stats");
  EXPECT_NE(st.out.find("refresh      1 refreshers"), std::string::npos) << st.out;
}

// With the writer stopped, a reader's ring fills: asks answer `full` at once and are counted.
TEST(ReadThroughTest, AFullRequestRingIsCountedAndNeverBlocks) {
  test::ScratchSegment seg("rt8");
  Daemon d(args(seg));
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  auto rf = Refresher::open(refresher_config(seg.name(), "idle"));
  ASSERT_TRUE(d.wait_for("refresher 'idle'")) << d.log();
  Reader r = Reader::open(seg.name());
  const NamespaceId ns = *r.namespace_id("acct");
  d.signal(SIGSTOP);
  int asked = 0, full = 0;
  for (int i = 0; i < 100; ++i) {
    const RequestStatus s = r.request(ns, "A-" + std::to_string(i), "X", RefreshReason::miss);
    asked += s == RequestStatus::asked;
    full += s == RequestStatus::full;
  }
  d.signal(SIGCONT);
  EXPECT_EQ(asked, static_cast<int>(shm::kRequestCells));
  EXPECT_EQ(full, 100 - asked);
  EXPECT_EQ(r.refresh_stats()->ring_full, static_cast<std::uint64_t>(full));
}

}  // namespace readthrough
