// Producer rings end to end in one process: a "daemon" thread polls the socket and ring sources
// as poscache-writer's loop does; producers (poscache::Producer) push from the test thread or
// their own threads; readers check what became visible. Hostile rings are built by hand.
#include "writer/ingest/ring_source.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>

#include "poscache/format.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "redis/redis_util.hpp"
#include "shm/hash.hpp"
#include "test_util.hpp"
#include "writer/ingest/socket_source.hpp"

namespace poscache::ingest {
namespace {

using namespace std::chrono_literals;

// The writer, its sources and the loop that serves them, on a thread of its own.
class Daemon {
 public:
  explicit Daemon(const std::string& tag, std::uint64_t capacity = 100'000,
                  std::optional<RedisConfig> redis = std::nullopt)
      : seg_(tag),
        writer_(Writer::open(config(seg_.name(), capacity, std::move(redis)))),
        window_(seg_.name(), writer_->stats().generation, 1024,
                [](const PositionKey&) { return 0; }),
        exec_(*writer_, &window_),
        socket_(SocketConfig{default_socket_path(seg_.name()), 0660, "", 64}, writer_->namespaces(),
                log_.sink()),
        rings_(*writer_, log_.sink()) {
    socket_.set_rings(&rings_);
    thread_ = std::thread([this] { loop(); });
  }
  ~Daemon() {
    stop_ = true;
    thread_.join();
  }
  void pause(bool p) { paused_ = p; }
  void pause_rings(bool p) { rings_paused_ = p; }  // the socket is still served
  [[nodiscard]] const std::string& segment() const { return seg_.name(); }
  [[nodiscard]] std::size_t rings() const { return ring_count_.load(); }
  test::LogLines& log() { return log_; }
  [[nodiscard]] std::string socket_path() const { return socket_.path(); }

 private:
  static WriterConfig config(const std::string& seg, std::uint64_t capacity,
                             std::optional<RedisConfig> redis) {
    WriterConfig c = test::small_config(seg, capacity);
    c.redis = std::move(redis);
    if (c.redis) c.log = [](LogLevel, std::string_view) {};
    return c;
  }
  void loop() {
    while (!stop_) {
      std::size_t n = 0;
      if (!paused_) {
        if (!rings_paused_) n += rings_.poll(exec_, 0, 256);
        n += socket_.poll(exec_, 0, 256);
        ring_count_ = rings_.rings();
      }
      writer_->tick();
      if (n == 0) std::this_thread::sleep_for(20us);
    }
  }
  test::ScratchSegment seg_;
  test::LogLines log_;
  std::unique_ptr<Writer> writer_;
  TradeWindow window_;
  CommandExecutor exec_;
  SocketSource socket_;
  RingSource rings_;
  std::atomic<bool> stop_{false}, paused_{false}, rings_paused_{false};
  std::atomic<std::size_t> ring_count_{0};
  std::thread thread_;
};

std::string field(Reader& r, const char* ns, std::string_view account, std::string_view instrument,
                  const char* name) {
  const NamespaceId id = *r.namespace_id(ns);
  Position p;
  if (r.get(id, account, instrument, p) != ReadStatus::ok) return "absent";
  const auto f = *r.namespace_info(id).field_index(name);
  return p.has(f) ? format_field(r.namespace_info(id), p, f) : "unset";
}

std::unique_ptr<Producer> producer(const Daemon& d, const std::string& name,
                                   std::uint64_t capacity = 4096) {
  ProducerConfig c;
  c.segment = d.segment();
  c.name = name;
  c.capacity = capacity;
  return Producer::open(c);
}

TEST(RingSourceTest, PushedUpdatesAreAppliedInOrderAndAcknowledged) {
  Daemon d("ring_order");
  auto p = producer(d, "orders");
  Reader r = Reader::open(d.segment());
  std::uint64_t last = 0;
  for (int i = 1; i <= 20'000; ++i) {
    auto u = p->make_update("spot", "w1", "SOL", {{"qty", std::to_string(i)}});
    ASSERT_TRUE(u) << u.error();
    const PushResult res = p->push(*u, 5s);
    ASSERT_EQ(res.status, PushStatus::ok);
    EXPECT_EQ(res.seq, last + 1);  // per-producer sequence, from 1
    last = res.seq;
  }
  EXPECT_EQ(p->wait_applied(last, 10s), WaitStatus::done);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "20000.000000000000000000");  // FIFO
  const ProducerStats st = p->stats();
  EXPECT_EQ(st.pushed, 20'000u);
  EXPECT_EQ(st.applied, 20'000u);
  EXPECT_EQ(st.rejected, 0u);
  EXPECT_TRUE(st.attached);
  EXPECT_EQ(p->wait_synced(last, 1ms), WaitStatus::no_redis);
}

TEST(RingSourceTest, EveryCommandTravelsOverTheRing) {
  Daemon d("ring_cmds");
  auto p = producer(d, "bot");
  Reader r = Reader::open(d.segment());
  ASSERT_EQ(p->fill("spot", "w1", "SOL", Side::buy, "10", "100", "0", "T1").status, PushStatus::ok);
  p->fill("spot", "w1", "SOL", Side::buy, "10", "110", "0", "T2");
  p->fill("spot", "w1", "SOL", Side::sell, "5", "120", "0.5", "T3");
  p->fill("spot", "w1", "SOL", Side::sell, "5", "120", "0.5", "T3");  // redelivered: ignored
  p->mark("spot", "SOL", "125");
  p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", 2);
  const PushResult last = p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", 1);
  ASSERT_EQ(p->wait_applied(last.seq, 5s), WaitStatus::done);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "15.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "avg_price"), "105.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "realized_pnl"), "75.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "fees"), "0.500000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "unrealized_pnl"), "300.000000000000000000");
  EXPECT_EQ(field(r, "moonwell", "0xab", "USDC", "blocks_unhealthy"), "3");
  p->reset("moonwell", "0xab", "USDC", "blocks_unhealthy");
  p->erase("spot", "w1", "SOL");
  auto u = p->make_update("marks", "venue", "ETH", {{"bid", "1"}});
  p->push(*u);
  p->invalidate_namespace("marks");
  ASSERT_EQ(p->wait_applied(p->invalidate_matching("moonwell:0x*:*").seq - 0, 5s),
            WaitStatus::done);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "absent");
  EXPECT_EQ(field(r, "marks", "venue", "ETH", "bid"), "absent");
  EXPECT_EQ(field(r, "moonwell", "0xab", "USDC", "blocks_unhealthy"), "absent");
  EXPECT_EQ(p->stats().rejected, 0u);
  // A command only the writer can refuse (its result would not fit the field): the producer
  // learns which message and why.
  p->fill("spot", "w2", "SOL", Side::buy, "10000000000000000000", "1");
  const PushResult big = p->fill("spot", "w2", "SOL", Side::buy, "1", "99999999999999999999");
  ASSERT_EQ(p->wait_applied(big.seq, 5s), WaitStatus::done);
  const ProducerStats st = p->stats();
  EXPECT_EQ(st.rejected, 1u);
  EXPECT_EQ(st.last_error.rfind("message " + std::to_string(big.seq) + ": fill:", 0), 0u)
      << st.last_error;
  EXPECT_NE(st.last_error.find("'cost_basis'"), std::string::npos) << st.last_error;
}

TEST(RingSourceTest, BadInputIsRefusedAtThePushNamingIt) {
  Daemon d("ring_bad");
  auto p = producer(d, "bad");
  EXPECT_EQ(p->fill("moonwell", "a", "B", Side::buy, "1", "1").status, PushStatus::bad_input);
  EXPECT_NE(p->error().find("lacks the trading fields"), std::string::npos) << p->error();
  EXPECT_EQ(p->fill("spot", "a:b", "B", Side::buy, "1", "1").status, PushStatus::bad_input);
  EXPECT_NE(p->error().find("a:b"), std::string::npos) << p->error();
  EXPECT_EQ(p->fill("spot", "a", "B", Side::buy, "1.5x", "1").status, PushStatus::bad_input);
  EXPECT_NE(p->error().find("1.5x"), std::string::npos) << p->error();
  auto u = p->make_update("spot", "a", "B", {{"qtty", "1"}});
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().find("qtty"), std::string::npos) << u.error();
  Update hand;  // a hand-built update with a character a key may not hold
  hand.ns = 0;
  hand.account_len = 3;
  std::memcpy(hand.account, "a*b", 3);
  hand.instrument_len = 1;
  hand.instrument[0] = 'X';
  hand.fields_mask = 1;
  EXPECT_EQ(p->push(hand).status, PushStatus::bad_input);
  EXPECT_EQ(p->stats().pushed, 0u);  // nothing reached the ring
}

TEST(RingSourceTest, AFullRingSaysFullAtOnceAndNothingIsDropped) {
  Daemon d("ring_full");
  auto p = producer(d, "small", 8);
  d.pause(true);  // the writer falls behind
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < 8; ++i) {
    auto u = p->make_update("spot", "w" + std::to_string(i), "SOL", {{"qty", "1"}});
    const PushResult r = p->push(*u);
    ASSERT_EQ(r.status, PushStatus::ok);
    seqs.push_back(r.seq);
  }
  auto u9 = p->make_update("spot", "w9", "SOL", {{"qty", "9"}});
  EXPECT_EQ(p->push(*u9).status, PushStatus::full);
  EXPECT_EQ(p->push(*u9, 2ms).status, PushStatus::full);  // waited, still full
  EXPECT_GE(p->stats().full, 2u);
  std::thread resume([&] {
    std::this_thread::sleep_for(20ms);
    d.pause(false);
  });
  const PushResult late = p->push(*u9, 5s);  // waits until the writer makes room
  resume.join();
  ASSERT_EQ(late.status, PushStatus::ok);
  EXPECT_EQ(late.seq, 9u);
  ASSERT_EQ(p->wait_applied(late.seq, 5s), WaitStatus::done);
  Reader r = Reader::open(d.segment());
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(field(r, "spot", "w" + std::to_string(i), "SOL", "qty"), "1.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w9", "SOL", "qty"), "9.000000000000000000");
}

// Four producers at once, each in its own thread, each writing its own positions: per-producer
// FIFO (the last value pushed for a key is the one readers see) and every acknowledged message
// applied.
TEST(RingSourceTest, FourProducersKeepTheirOwnOrderAndLoseNothing) {
  Daemon d("ring_four");
  constexpr int kMessages = 30'000, kKeys = 500;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      auto p = producer(d, "p" + std::to_string(k), 1024);
      std::uint64_t last = 0;
      for (int i = 1; i <= kMessages; ++i) {
        auto u = p->make_update("spot", "p" + std::to_string(k), "I" + std::to_string(i % kKeys),
                                {{"qty", std::to_string(i)}});
        const PushResult r = p->push(*u, 5s);
        if (r.status != PushStatus::ok || r.seq != last + 1) ++failures;
        last = r.seq;
      }
      if (p->wait_applied(last, 10s) != WaitStatus::done) ++failures;
      if (p->stats().applied != kMessages) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  Reader r = Reader::open(d.segment());
  int checked = 0;
  for (int k = 0; k < 4; ++k) {
    for (int key = 0; key < kKeys; ++key) {
      // The last i with i % kKeys == key.
      const int last = kMessages - ((kMessages - key) % kKeys);
      EXPECT_EQ(field(r, "spot", "p" + std::to_string(k), "I" + std::to_string(key), "qty"),
                std::to_string(last) + ".000000000000000000");
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * kKeys);
}

// A producer process killed with -9 in the middle of pushing: the writer drains what it
// published, releases its ring, and another producer never notices.
TEST(RingSourceTest, AProducerKilledMidPushIsDrainedAndReleased) {
  Daemon d("ring_kill");
  auto other = producer(d, "survivor");
  const pid_t child = test::fork_child([&] {
    auto p = producer(d, "doomed");
    for (std::uint64_t i = 1;; ++i) {
      auto u = p->make_update("spot", "doomed", "I" + std::to_string(i % 100),
                              {{"qty", std::to_string(i)}});
      p->push(*u, 1s);
    }
    return 0;
  });
  test::eventually([&] { return d.rings() == 2; }, 10s);
  std::this_thread::sleep_for(50ms);
  ::kill(child, SIGKILL);
  test::wait_child(child);
  EXPECT_TRUE(test::eventually([&] { return d.rings() == 1; }, 10s)) << "the ring was not released";
  auto u = other->make_update("spot", "alive", "SOL", {{"qty", "1"}});
  const PushResult r = other->push(*u);
  ASSERT_EQ(r.status, PushStatus::ok);
  EXPECT_EQ(other->wait_applied(r.seq, 5s), WaitStatus::done);
  bool released = false;
  for (const auto& l : d.log().lines())
    released |= l.find("'doomed'") != std::string::npos && l.find("released") != std::string::npos;
  EXPECT_TRUE(released);
}

// With a Redis mirror, a producer learns when Redis holds its messages, not only the segment.
TEST(RingSourceTest, AProducerCanWaitUntilRedisHoldsItsMessages) {
  test::RedisServer srv;
  Daemon d("ring_redis", 1024, srv.config());
  auto p = producer(d, "synced");
  PushResult last;
  for (int i = 1; i <= 200; ++i) {
    auto u =
        p->make_update("spot", "w" + std::to_string(i % 20), "SOL", {{"qty", std::to_string(i)}});
    last = p->push(*u, 5s);
    ASSERT_EQ(last.status, PushStatus::ok);
  }
  ASSERT_EQ(p->wait_applied(last.seq, 5s), WaitStatus::done);
  ASSERT_EQ(p->wait_synced(last.seq, 10s), WaitStatus::done);
  EXPECT_TRUE(p->stats().redis);
  EXPECT_GE(p->stats().synced, last.seq);
  auto c = srv.client();
  const auto r = test::cmd(c, {"HGET", "poscache:v1:spot:{w0}:SOL", "qty"});
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(r->str, r->len), "200.000000000000000000");  // in Redis when acknowledged
}

// A ring built by hand, as a hostile or buggy producer would: any bytes, any indices.
class HandRing {
 public:
  HandRing(const std::string& socket_path, std::uint64_t capacity = 16) : cap_(capacity) {
    fd_ = ::memfd_create("hand-ring", MFD_CLOEXEC);
    bytes_ = shm::ring_bytes(capacity);
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(bytes_)), 0);
    h_ = static_cast<shm::RingHeader*>(
        ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
    h_->version = shm::kRingVersion;
    h_->message_size = sizeof(shm::RingMessage);
    h_->capacity = capacity;
    std::memcpy(h_->name, "hostile", 7);
    h_->magic = shm::kRingMagic;
    std::string reply;
    sock_ = attach(socket_path, reply);
    EXPECT_NE(reply.find("attached"), std::string::npos) << reply;
  }
  // Hands this ring's descriptor over a new connection; returns the connection and the reply.
  int attach(const std::string& socket_path, std::string& reply) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, socket_path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string line = "{\"op\":\"attach_ring\",\"name\":\"hostile\"}\n";
    iovec iov{const_cast<char*>(line.data()), line.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd_, sizeof(int));
    EXPECT_EQ(::sendmsg(s, &msg, 0), static_cast<ssize_t>(line.size()));
    char buf[512] = {};
    EXPECT_GT(::read(s, buf, sizeof buf - 1), 0);
    reply = buf;
    return s;
  }
  void hang_up() {
    ::close(sock_);
    sock_ = -1;
  }
  ~HandRing() {
    if (sock_ >= 0) ::close(sock_);
    ::munmap(h_, bytes_);
    ::close(fd_);
  }
  // A message with a key (ns 0 = spot) and qty = 7, the right hash unless told otherwise.
  shm::RingMessage upsert(std::string_view account, std::string_view instrument) {
    shm::RingMessage m{};
    m.kind = static_cast<std::uint8_t>(shm::RingKind::upsert);
    m.ns = 0;
    m.account_len = static_cast<std::uint8_t>(account.size());
    m.instrument_len = static_cast<std::uint8_t>(instrument.size());
    std::memcpy(m.account, account.data(), account.size());
    std::memcpy(m.instrument, instrument.data(), instrument.size());
    m.fields_mask = 1;
    m.values[0] = 7;
    m.key_hash = shm::key_hash(0, account, instrument);
    return m;
  }
  std::uint64_t publish(const shm::RingMessage& m) {
    std::memcpy(&shm::ring_messages(h_)[tail_ % cap_], &m, sizeof m);
    shm::store_release(&h_->tail, ++tail_);
    return tail_;
  }
  bool applied(std::uint64_t seq) {
    return test::eventually([&] { return shm::load_acquire(&h_->head) >= seq; }, 5s);
  }
  shm::RingHeader* h() { return h_; }
  std::uint64_t tail_ = 0;

 private:
  std::uint64_t cap_;
  int fd_ = -1, sock_ = -1;
  std::size_t bytes_ = 0;
  shm::RingHeader* h_ = nullptr;
};

TEST(RingSourceTest, AHostileRingCanCorruptNothingAndIsToldWhy) {
  Daemon d("ring_hostile");
  auto good = producer(d, "good");
  auto u = good->make_update("spot", "w1", "SOL", {{"qty", "1"}});
  ASSERT_EQ(good->wait_applied(good->push(*u).seq, 5s), WaitStatus::done);
  HandRing bad(d.socket_path());
  const std::uint64_t rejects_before = Reader::open(d.segment()).stats().rejects;

  auto wrong_new = bad.upsert("w2", "SOL");
  wrong_new.key_hash ^= 1;  // a new key under a false hash: it would land in the wrong bucket
  auto wrong_old = bad.upsert("w1", "SOL");
  // An existing key under a false hash that still leads to its bucket (bit 30 is neither in the
  // bucket index of this table nor in the tag): only the stored hash can tell.
  wrong_old.key_hash ^= 1ull << 30;
  auto colon = bad.upsert("w:3", "SOL");  // a character keys may not hold (hash computed right)
  auto kind = bad.upsert("w4", "SOL");
  kind.kind = 0;
  auto ns = bad.upsert("w5", "SOL");
  ns.ns = 99;
  auto len = bad.upsert("w6", "SOL");
  len.account_len = 200;
  auto fields = bad.upsert("w7", "SOL");
  fields.fields_mask = 1u << 20;  // beyond the schema's 7 fields
  auto digits = bad.upsert("w8", "SOL");
  digits.values[1] = ~0ull >> 1;  // a mantissa of more than 38 digits
  std::uint64_t seq = 0;
  for (const auto& m : {wrong_new, wrong_old, colon, kind, ns, len, fields, digits})
    seq = bad.publish(m);
  seq = bad.publish(bad.upsert("w9", "SOL"));  // and one good message after them
  ASSERT_TRUE(bad.applied(seq));

  Reader r = Reader::open(d.segment());
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "1.000000000000000000");  // untouched
  for (const char* a : {"w2", "w4", "w5", "w6", "w7", "w8"})
    EXPECT_EQ(field(r, "spot", a, "SOL", "qty"), "absent") << a;
  EXPECT_EQ(field(r, "spot", "w9", "SOL", "qty"), "0.000000000000000007");
  EXPECT_EQ(r.stats().rejects - rejects_before, 8u);
  EXPECT_EQ(shm::load_relaxed(&bad.h()->rejected), 8u);
  // Scan for any position whose key breaks the rules: none got in.
  r.scan(ScanFilter{}, [&](const Position& p) {
    EXPECT_TRUE(valid_account(p.account_view())) << p.account_view();
  });

  // Indices out of range: the writer drops the ring unread, says why, and carries on.
  shm::store_release(&bad.h()->head, 0);  // and a false head: the drop writes the true one
  shm::store_release(&bad.h()->tail, bad.tail_ + 1'000'000);
  EXPECT_TRUE(test::eventually([&] { return d.rings() == 1; }, 5s));
  EXPECT_EQ(shm::load_acquire(&bad.h()->dropped), 1u);
  EXPECT_EQ(shm::load_acquire(&bad.h()->head), seq);
  EXPECT_TRUE(d.log().any_of([](const std::string& l) {
    return l.find("'hostile'") != std::string::npos &&
           l.find("dropped as damaged: its tail") != std::string::npos;
  })) << d.log().joined();
  EXPECT_FALSE(d.log().any_of([](const std::string& l) {
    return l.find("'hostile'") != std::string::npos && l.find("hung up") != std::string::npos;
  })) << d.log().joined();
  std::string reply;
  const int again_sock = bad.attach(d.socket_path(), reply);  // handed over again: refused
  EXPECT_NE(reply.find("dropped as damaged"), std::string::npos) << reply;
  ::close(again_sock);
  auto again = good->make_update("spot", "w1", "SOL", {{"qty", "2"}});
  EXPECT_EQ(good->wait_applied(good->push(*again).seq, 5s), WaitStatus::done);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "2.000000000000000000");
}

// Every message's outcome comes back to its producer: the same words the socket replies with.
TEST(RingSourceTest, EveryMessageSaysWhatTheWriterDidWithIt) {
  Daemon d("ring_outcome");
  auto p = producer(d, "outcomes", 8);
  const auto fill = p->fill("spot", "w1", "SOL", Side::buy, "1", "100", "0", "T1", 1s);
  const auto again = p->fill("spot", "w1", "SOL", Side::buy, "1", "100", "0", "T1", 1s);
  auto newer = p->make_update("spot", "w2", "SOL", {{"qty", "1"}}, 10);
  auto older = p->make_update("spot", "w2", "SOL", {{"qty", "2"}}, 5);
  const auto up = p->push(*newer, 1s);
  const auto stale = p->push(*older, 1s);
  const auto gone = p->erase("spot", "nobody", "SOL", 1s);
  const auto refused = p->add("spot", "w1", "SOL", "qty", 1, 1s);  // qty is not an int64
  ASSERT_EQ(refused.status, PushStatus::bad_input);  // caught at the push: the ring never saw it
  const auto late = p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", INT64_MAX, 1s);
  const auto overflow = p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", 1, 1s);
  ASSERT_EQ(p->wait_applied(overflow.seq, 5s), WaitStatus::done);
  EXPECT_EQ(p->outcome(fill.seq), Outcome::applied);
  EXPECT_EQ(p->outcome(again.seq), Outcome::duplicate);
  EXPECT_EQ(p->outcome(up.seq), Outcome::applied);
  EXPECT_EQ(p->outcome(stale.seq), Outcome::stale);
  EXPECT_EQ(p->outcome(gone.seq), Outcome::not_found);
  EXPECT_EQ(p->outcome(late.seq), Outcome::applied);
  std::string why;
  EXPECT_EQ(p->outcome(overflow.seq, &why), Outcome::rejected);
  EXPECT_NE(why.find("would overflow int64"), std::string::npos) << why;
  EXPECT_EQ(p->outcome(overflow.seq + 1), Outcome::unknown);  // never pushed
  EXPECT_EQ(p->outcome(0), Outcome::unknown);
  // The ring holds 8: message 1's slot is reused by message 9, and its outcome is forgotten.
  std::uint64_t last = 0;
  for (int i = 0; i < 8; ++i) last = p->erase("spot", "nobody", "SOL", 1s).seq;
  ASSERT_EQ(p->wait_applied(last, 5s), WaitStatus::done);
  EXPECT_EQ(p->outcome(fill.seq), Outcome::unknown);
  EXPECT_EQ(p->outcome(last), Outcome::not_found);
  // Paused: pushed but not applied yet.
  d.pause(true);
  const auto waiting = p->erase("spot", "nobody", "SOL", 1s);
  EXPECT_EQ(p->outcome(waiting.seq), Outcome::pending);
  d.pause(false);
}

// Every kind of push waits up to its timeout for room, then says full; none is dropped.
TEST(RingSourceTest, EveryPushWaitsUpToItsTimeoutWhileTheRingIsFull) {
  Daemon d("ring_wait");
  auto p = producer(d, "waits", 2);
  d.pause(true);
  auto u = p->make_update("spot", "w0", "SOL", {{"qty", "1"}});
  ASSERT_EQ(p->push(*u).status, PushStatus::ok);
  ASSERT_EQ(p->push(*u).status, PushStatus::ok);  // full now
  using Push = std::function<PushResult(Producer::Timeout)>;
  const std::vector<std::pair<const char*, Push>> pushes = {
      {"upsert", [&](auto t) { return p->push(*u, t); }},
      {"fill",
       [&](auto t) { return p->fill("spot", "w1", "SOL", Side::buy, "1", "1", "0", {}, t); }},
      {"mark", [&](auto t) { return p->mark("spot", "SOL", "2", {}, t); }},
      {"add", [&](auto t) { return p->add("moonwell", "a", "USDC", "blocks_unhealthy", 1, t); }},
      {"reset", [&](auto t) { return p->reset("moonwell", "a", "USDC", "blocks_unhealthy", t); }},
      {"erase", [&](auto t) { return p->erase("spot", "w9", "SOL", t); }},
      {"invalidate_account", [&](auto t) { return p->invalidate_account("w9", {}, t); }},
      {"invalidate_namespace", [&](auto t) { return p->invalidate_namespace("marks", t); }},
      {"invalidate_matching", [&](auto t) { return p->invalidate_matching("x:*", t); }},
      {"invalidate_all", [&](auto t) { return p->invalidate_all(t); }},
  };
  for (const auto& [name, push] : pushes) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(push(Producer::Timeout::zero()).status, PushStatus::full) << name;
    EXPECT_EQ(push(3ms).status, PushStatus::full) << name;
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 3ms) << name << " did not wait";
  }
  // The writer resumes while each push waits: every one gets in, in order.
  d.pause(false);
  d.pause_rings(true);
  std::uint64_t last = 0;
  for (const auto& [name, push] : pushes) {
    std::thread resume([&] {
      std::this_thread::sleep_for(5ms);
      d.pause_rings(false);
    });
    const PushResult r = push(5s);
    resume.join();
    EXPECT_EQ(r.status, PushStatus::ok) << name;
    last = r.seq;
    ASSERT_EQ(p->wait_applied(last, 5s), WaitStatus::done);
    d.pause_rings(true);
    // Fill the ring again so the next push has to wait.
    while (p->push(*u).status == PushStatus::ok) {
    }
  }
  d.pause_rings(false);
  EXPECT_EQ(p->stats().rejected, 0u);
}

// A ring the writer drops as damaged: the producer's next push fails naming why, and a wait for
// a message the writer never applied answers dropped, never done.
TEST(RingSourceTest, ADroppedRingTellsItsProducerWhyAndNeverSaysApplied) {
  Daemon d("ring_drop");
  auto p = producer(d, "damaged", 16);
  auto u = p->make_update("spot", "w1", "SOL", {{"qty", "1"}});
  const auto first = p->push(*u, 1s);
  ASSERT_EQ(p->wait_applied(first.seq, 5s), WaitStatus::done);
  d.pause_rings(true);
  const auto unapplied = p->push(*u, 1s);
  ASSERT_EQ(unapplied.status, PushStatus::ok);
  // Damage the ring as a stray write would: its tail, through a second mapping of the memfd.
  shm::RingHeader* h = nullptr;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (target.find("poscache-ring:damaged") == std::string::npos) continue;
    const int fd = std::stoi(e.path().filename().string());
    h = static_cast<shm::RingHeader*>(
        ::mmap(nullptr, shm::ring_bytes(16), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  }
  ASSERT_NE(h, nullptr);
  shm::store_release(&h->tail, std::uint64_t{1} << 40);
  d.pause_rings(false);
  EXPECT_EQ(p->wait_applied(unapplied.seq, 5s), WaitStatus::dropped);
  EXPECT_EQ(p->applied(), first.seq);
  const auto next = p->push(*u, 1s);
  EXPECT_EQ(next.status, PushStatus::dropped);
  EXPECT_NE(p->error().find("dropped as damaged"), std::string::npos) << p->error();
  EXPECT_NE(p->error().find("were not applied"), std::string::npos) << p->error();
  EXPECT_EQ(p->fill("spot", "w1", "SOL", Side::buy, "1", "1").status, PushStatus::dropped);
  EXPECT_TRUE(p->stats().dropped);
  ::munmap(h, shm::ring_bytes(16));
}

// Refused messages are logged with their reason, at most ten a window per ring; the rest are
// summed up when the window closes.
TEST(RingSourceTest, RefusalsAreLoggedWithTheirReasonAndRateLimited) {
  Daemon d("ring_logref");
  auto p = producer(d, "noisy", 64);
  std::uint64_t last = 0;
  for (int i = 0; i < 30; ++i) {
    // The writer refuses each (the sum would overflow the field), not the push.
    p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", INT64_MAX, 1s);
    last = p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", INT64_MAX, 1s).seq;
    p->reset("moonwell", "0xab", "USDC", "blocks_unhealthy", 1s);
  }
  ASSERT_EQ(p->wait_applied(last, 5s), WaitStatus::done);
  const auto refusals = [&] {
    std::size_t n = 0;
    for (const auto& l : d.log().lines())
      if (l.find("'noisy'") != std::string::npos && l.find("refused message") != std::string::npos)
        ++n;
    return n;
  };
  EXPECT_EQ(refusals(), 10u) << d.log().joined();
  EXPECT_TRUE(d.log().any_of([](const std::string& l) {
    return l.find("would overflow int64") != std::string::npos;
  })) << d.log().joined();
}

// A batch over a ring: published whole, applied whole, its outcome and each command's reported;
// batches never split across the writer's drains, however they fall in the ring.
TEST(RingSourceTest, ABatchOverARingIsAppliedWholeAndSaysSo) {
  Daemon d("ring_batch");
  auto p = producer(d, "batcher", 1024);
  Reader r = Reader::open(d.segment());
  p->begin_batch();
  EXPECT_TRUE(p->in_batch());
  EXPECT_EQ(p->fill("spot", "w1", "SOL", Side::buy, "10", "100", "0.1", "R-1").status,
            PushStatus::ok);
  EXPECT_EQ(p->fill("spot", "w1", "USDC", Side::sell, "1000.1", "1", "0", "R-1-cash").status,
            PushStatus::ok);
  EXPECT_EQ(p->stats().pushed, 0u);  // staged, not yet in the ring
  const PushResult b = p->end_batch(1s);
  ASSERT_EQ(b.status, PushStatus::ok) << p->error();
  EXPECT_FALSE(p->in_batch());
  ASSERT_EQ(p->wait_applied(b.seq, 5s), WaitStatus::done);
  EXPECT_EQ(p->outcome(b.seq), Outcome::applied);
  EXPECT_EQ(p->outcome(b.seq + 1), Outcome::applied);
  EXPECT_EQ(p->outcome(b.seq + 2), Outcome::applied);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "10.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "USDC", "qty"), "-1000.100000000000000000");
  // Sent again: duplicates, each said so.
  p->begin_batch();
  p->fill("spot", "w1", "SOL", Side::buy, "10", "100", "0.1", "R-1");
  p->fill("spot", "w1", "USDC", Side::sell, "1000.1", "1", "0", "R-1-cash");
  const PushResult again = p->end_batch(1s);
  ASSERT_EQ(p->wait_applied(again.seq, 5s), WaitStatus::done);
  EXPECT_EQ(p->outcome(again.seq + 1), Outcome::duplicate);
  EXPECT_EQ(p->outcome(again.seq + 2), Outcome::duplicate);
  // Refused by the writer (the add would overflow): nothing applied, every outcome says why.
  p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", INT64_MAX, 1s);
  p->begin_batch();
  p->fill("spot", "w1", "SOL", Side::buy, "1", "100", "0", "R-2");
  p->add("moonwell", "0xab", "USDC", "blocks_unhealthy", 1);
  const PushResult bad = p->end_batch(1s);
  ASSERT_EQ(p->wait_applied(bad.seq, 5s), WaitStatus::done);
  std::string why;
  EXPECT_EQ(p->outcome(bad.seq, &why), Outcome::rejected);
  EXPECT_NE(why.find("command 1 (add)"), std::string::npos) << why;
  EXPECT_EQ(p->outcome(bad.seq + 1, &why), Outcome::rejected);
  EXPECT_NE(why.find("the batch (message " + std::to_string(bad.seq) + ") was refused"),
            std::string::npos)
      << why;
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "10.000000000000000000");
  // Refused at the producer: nothing is sent, the error names the command.
  p->begin_batch();
  p->fill("spot", "w1", "SOL", Side::buy, "1", "100");
  EXPECT_EQ(p->fill("spot", "w1", "SOL", Side::buy, "1", "1.5x").status, PushStatus::bad_input);
  const std::uint64_t pushed = p->stats().pushed;
  EXPECT_EQ(p->end_batch(1s).status, PushStatus::bad_input);
  EXPECT_NE(p->error().find("batch: command 1: fill: price"), std::string::npos) << p->error();
  EXPECT_EQ(p->stats().pushed, pushed);
  EXPECT_THROW(([&] {
                 p->begin_batch();
                 p->begin_batch();
               })(),
               Error);
  p->abort_batch();
  // 65 commands: one more than a batch holds.
  p->begin_batch();
  for (int i = 0; i < 65; ++i) p->erase("spot", "nobody", "SOL");
  EXPECT_EQ(p->end_batch(1s).status, PushStatus::bad_input);
  EXPECT_NE(p->error().find("at most 64"), std::string::npos) << p->error();
  // Many batches while the writer waits, then drained in polls of up to 256 messages: batches
  // of 3 to 64 commands straddle every drain boundary, and each is still applied whole.
  d.pause(true);
  std::vector<std::pair<std::uint64_t, int>> batches;
  std::uint64_t queued = 0;
  for (int k = 0; k < 24; ++k) {
    const int size = 3 + (k * 29) % 62;
    p->begin_batch();
    for (int i = 0; i < size; ++i)
      p->add("moonwell", "b" + std::to_string(k), "I" + std::to_string(i % 7), "blocks_unhealthy",
             1);
    const PushResult pr = p->end_batch(0s);
    if (pr.status == PushStatus::full) {
      p->abort_batch();
      break;
    }
    ASSERT_EQ(pr.status, PushStatus::ok) << p->error();
    batches.emplace_back(pr.seq, size);
    queued += static_cast<std::uint64_t>(size) + 1;
  }
  d.pause(false);
  ASSERT_GT(queued, 3u * 256u);  // several drains' worth: batches fall across their boundaries
  ASSERT_EQ(p->wait_applied(batches.back().first, 5s), WaitStatus::done);
  for (std::size_t k = 0; k < batches.size(); ++k) {
    EXPECT_EQ(p->outcome(batches[k].first), Outcome::applied) << k;
    const int size = batches[k].second;
    for (int i = 0; i < 7 && i < size; ++i)
      EXPECT_EQ(field(r, "moonwell", "b" + std::to_string(k), "I" + std::to_string(i),
                      "blocks_unhealthy"),
                std::to_string(size / 7 + (i < size % 7 ? 1 : 0)))
          << k << " " << i;
  }
  EXPECT_EQ(Producer::kMaxBatchCommands, kMaxGroupCommands);
}

// A hostile batch header: more commands than published, or more than a batch holds: refused
// alone, the messages after it applied one by one.
TEST(RingSourceTest, ABatchHeaderThatLiesIsRefusedAlone) {
  Daemon d("ring_batch_bad");
  HandRing bad(d.socket_path());
  shm::RingMessage header{};
  header.kind = static_cast<std::uint8_t>(shm::RingKind::group);
  header.values[0] = 5;  // five announced, one published
  std::uint64_t seq = bad.publish(header);
  const std::uint64_t header_seq = seq;
  seq = bad.publish(bad.upsert("h1", "SOL"));
  ASSERT_TRUE(bad.applied(seq));
  header.values[0] = 65;
  const std::uint64_t big_seq = bad.publish(header);
  seq = bad.publish(bad.upsert("h2", "SOL"));
  ASSERT_TRUE(bad.applied(seq));
  Reader r = Reader::open(d.segment());
  EXPECT_EQ(field(r, "spot", "h1", "SOL", "qty"), "0.000000000000000007");
  EXPECT_EQ(field(r, "spot", "h2", "SOL", "qty"), "0.000000000000000007");
  EXPECT_EQ(shm::load_relaxed(&bad.h()->rejected), 2u);
  const auto& m1 = shm::ring_messages(bad.h())[(header_seq - 1) % 16];
  EXPECT_EQ(shm::ring_outcomes(bad.h(), 16)[(header_seq - 1) % 16],
            shm::outcome_word(header_seq, shm::RingOutcome::rejected));
  EXPECT_NE(std::string(shm::refusal_text(m1)).find("1 published after it"), std::string::npos);
  const auto& m2 = shm::ring_messages(bad.h())[(big_seq - 1) % 16];
  EXPECT_NE(std::string(shm::refusal_text(m2)).find("a header of 65 commands"), std::string::npos);
}

// Text fields travel over the ring in the value slots they span (three for a 48-byte asset
// address), exactly; a hostile message with bad text bytes is refused naming the field, and
// nothing of it lands.
TEST(RingSourceTest, TextFieldsTravelWholeAndBadTextIsRefused) {
  Daemon d("ring_text");
  auto p = producer(d, "lender");
  Reader r = Reader::open(d.segment());
  const std::string weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";
  auto u = p->make_update(
      "moonwell", "0xab", "WETH",
      {{"collateral_amount", "5"}, {"collateral_asset", weth}, {"debt_asset", "usdc€"}});
  ASSERT_TRUE(u) << u.error();
  ASSERT_EQ(p->wait_applied(p->push(*u).seq, 5s), WaitStatus::done);
  EXPECT_EQ(field(r, "moonwell", "0xab", "WETH", "collateral_asset"), weth);
  EXPECT_EQ(field(r, "moonwell", "0xab", "WETH", "debt_asset"), "usdc€");
  EXPECT_EQ(field(r, "moonwell", "0xab", "WETH", "collateral_amount"), "5");
  // A shorter text replaces a longer one whole: nothing of the old one is left behind it.
  auto shorter = p->make_update("moonwell", "0xab", "WETH", {{"collateral_asset", "ETH"}});
  ASSERT_EQ(p->wait_applied(p->push(*shorter).seq, 5s), WaitStatus::done);
  EXPECT_EQ(field(r, "moonwell", "0xab", "WETH", "collateral_asset"), "ETH");
  // Refused at the producer, naming the cause.
  auto long_text =
      p->make_update("moonwell", "0xab", "WETH", {{"debt_asset", std::string(49, 'a')}});
  ASSERT_FALSE(long_text);
  EXPECT_EQ(long_text.error(), "text field 'debt_asset' holds at most 48 bytes, got 49");
  // Hand-built messages that break the rules where only the writer can see it.
  HandRing bad(d.socket_path());
  auto text_msg = [&](const char* account, std::string_view bytes) {
    auto m = bad.upsert(account, "WETH");
    m.ns = 1;  // moonwell
    m.key_hash = shm::key_hash(1, account, "WETH");
    m.fields_mask = 1u << 6;  // collateral_asset: value slots 6-8
    std::memcpy(reinterpret_cast<char*>(&m.values[12]), bytes.data(), bytes.size());
    return m;
  };
  const std::string padded_junk = std::string("ETH") + '\0' + "junk";  // bytes after the NUL
  auto last_error = [&] {
    return std::string(reinterpret_cast<const char*>(bad.h()->error),
                       shm::load_relaxed(&bad.h()->error_len));
  };
  ASSERT_TRUE(bad.applied(bad.publish(text_msg("h1", "\xC0\xAF"))));
  EXPECT_EQ(last_error(), "message 1: text field 'collateral_asset' is not valid UTF-8 (byte 0)");
  ASSERT_TRUE(bad.applied(bad.publish(text_msg("h2", padded_junk))));
  EXPECT_EQ(last_error(),
            "message 2: field 'collateral_asset': the bytes after its 3-byte text are not zero "
            "(a text is NUL-padded)");
  ASSERT_TRUE(bad.applied(bad.publish(text_msg("h3", "0xA0b8"))));  // a good one after them
  EXPECT_EQ(field(r, "moonwell", "h1", "WETH", "collateral_asset"), "absent");
  EXPECT_EQ(field(r, "moonwell", "h2", "WETH", "collateral_asset"), "absent");
  EXPECT_EQ(field(r, "moonwell", "h3", "WETH", "collateral_asset"), "0xA0b8");
  EXPECT_EQ(shm::load_relaxed(&bad.h()->rejected), 2u);
}

// One ring, one consumer: a ring handed over again while its first connection is alive is
// refused; after that connection hung up, the ring moves to the new one and nothing is applied
// twice.
TEST(RingSourceTest, ARingHandedOverAgainHasOneConsumer) {
  Daemon d("ring_twice");
  HandRing ring(d.socket_path());
  std::string reply;
  const int second = ring.attach(d.socket_path(), reply);
  EXPECT_NE(reply.find("attached through another connection"), std::string::npos) << reply;
  ::close(second);
  d.pause_rings(true);
  std::uint64_t seq = 0;
  for (int i = 1; i <= 10; ++i) {
    auto m = ring.upsert("w1", "SOL");
    m.fields_mask = 1;
    m.values[0] = static_cast<std::uint64_t>(i);
    m.source_seq = 0;
    seq = ring.publish(m);
  }
  ring.hang_up();  // the connection drops with 10 messages unapplied
  ASSERT_TRUE(test::eventually(
      [&] {
        for (const auto& l : d.log().lines())
          if (l.find("disconnected") != std::string::npos) return true;
        return false;
      },
      5s));
  const int third = ring.attach(d.socket_path(), reply);  // the writer still holds the ring
  EXPECT_NE(reply.find("attached"), std::string::npos) << reply;
  d.pause_rings(false);
  ASSERT_TRUE(ring.applied(seq));
  EXPECT_EQ(d.rings(), 1u);
  Reader r = Reader::open(d.segment());
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "0.000000000000000010");
  EXPECT_EQ(r.stats().updates + r.stats().inserts, 10u);  // each message once
  bool moved = false;
  for (const auto& l : d.log().lines())
    moved |= l.find("re-attached its ring at message 0") != std::string::npos;
  EXPECT_TRUE(moved);
  ::close(third);
}

}  // namespace
}  // namespace poscache::ingest
