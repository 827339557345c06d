// Ingest: what a producer pays to push, how soon a reader sees it, how much the writer applies
// from producer rings and from the JSON-lines socket, and what a fill costs against an upsert.
// Every figure is printed beside its floor from the same run:
//   push                  boost::lockfree::spsc_queue of the same 512-byte message, in process
//   producer -> visible   one cache line handed between the two cores, twice (there and back
//                         through the writer is two hand-offs)
//   ring throughput       the writer's own Writer::upsert_batch of the same updates
//   fill                  Writer::upsert of the same position
//   stream source         a bare consumer of the same entries: XREADGROUP and XACK in batches of
//                         the same size on one connection, nothing applied (what Redis alone
//                         allows), against a redis-server this program starts on --redis-cpu
// The writer runs the daemon's loop on a thread of its own (RingSource, SocketSource and the
// CommandExecutor, exactly as poscache-writer), busy-polling and pinned to --writer-cpu.
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/shared_memory_object.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "shm/cpu_relax.hpp"
#include "shm/hash.hpp"
#include "shm/ring.hpp"
#include "tests/redis_server.hpp"
#include "tools/feed_client.hpp"
#include "writer/ingest/ring_source.hpp"
#include "writer/ingest/socket_source.hpp"
#include "writer/ingest/stream_source.hpp"
#include "writer/net/redis_client.hpp"

using namespace poscache;
using namespace poscache::bench;
using namespace std::chrono_literals;

namespace {

// The daemon's apply loop on a thread: rings first, then the socket, then tick().
class Daemon {
 public:
  Daemon(const std::string& seg, std::uint64_t capacity, int cpu)
      : writer_(Writer::open(bench_config(seg, capacity))),
        exec_(*writer_, nullptr),
        socket_(ingest::SocketConfig{ingest::default_socket_path(seg), 0660, "", 64},
                writer_->namespaces(), nullptr),
        rings_(*writer_, nullptr) {
    socket_.set_rings(&rings_);
    thread_ = std::thread([this, cpu] {
      pin_to_cpu(cpu);
      while (!stop_.load(std::memory_order_relaxed)) {
        if (paused_.load(std::memory_order_relaxed)) {
          std::this_thread::sleep_for(100us);
          continue;
        }
        // As poscache-writer --busy-poll: rings every turn; the socket and tick() every 100 us.
        rings_.poll(exec_, 0, 256);
        const std::int64_t t = shm::monotonic_ns();
        if (t >= next_slow_) {
          socket_.poll(exec_, 0, 256);
          writer_->tick();
          next_slow_ = t + 100'000;
        }
      }
    });
  }
  ~Daemon() {
    stop_ = true;
    thread_.join();
    writer_->close();
  }
  Writer& writer() { return *writer_; }  // only while paused
  void pause(bool p) {
    paused_ = p;
    std::this_thread::sleep_for(5ms);
  }

 private:
  std::unique_ptr<Writer> writer_;
  ingest::CommandExecutor exec_;
  ingest::SocketSource socket_;
  ingest::RingSource rings_;
  std::atomic<bool> stop_{false}, paused_{false};
  std::int64_t next_slow_ = 0;
  std::thread thread_;
};

std::unique_ptr<Producer> open_producer(const std::string& seg, const std::string& name,
                                        std::uint64_t capacity = 4096) {
  ProducerConfig c;
  c.segment = seg;
  c.name = name;
  c.capacity = capacity;
  return Producer::open(c);
}

}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv,
          {{"capacity", "1000000"},
           {"pushes", "200000"},
           {"rounds", "100000"},
           {"seconds", "3"},
           {"producers", "1,2,4"},
           {"socket-lines", "300000"},
           {"stream-entries", "300000"},
           {"sections", "1,2,3,4,5,6"},
           {"writer-cpu", "0"},
           {"producer-cpu", "1"}},
          "bench_ingest [--capacity 1000000] [--pushes 200000] [--rounds 100000] [--seconds 3]\n"
          "             [--producers 1,2,4] [--socket-lines 300000] [--stream-entries 300000]\n"
          "             [--writer-cpu 0] [--producer-cpu 1] [--sections 1,2,3,4,5,6]");
  const auto capacity = static_cast<std::uint64_t>(f.num("capacity"));
  const std::vector<long long> sections = f.list("sections");
  const auto section = [&](long long k) {
    return std::find(sections.begin(), sections.end(), k) != sections.end();
  };
  const int wcpu = static_cast<int>(f.num("writer-cpu")),
            pcpu = static_cast<int>(f.num("producer-cpu"));
  const double npt = ns_per_tick();
  std::printf("bench_ingest: %s, %u CPUs, TSC %.3f ns/tick, table of %llu positions\n",
              cpu_name().c_str(), std::thread::hardware_concurrency(), npt,
              static_cast<unsigned long long>(capacity));
  const std::string seg = "poscache_bench_ingest_" + std::to_string(::getpid());
  Keys keys(capacity);
  std::mt19937_64 rng(42);

  // ---- 1. push cost ----------------------------------------------------------------------------
  if (section(1)) {
    const auto pushes = static_cast<std::size_t>(f.num("pushes"));
    std::printf("\n1. push cost (producer cpu %d, writer draining on cpu %d)\n", pcpu, wcpu);
    // Floor: boost::lockfree::spsc_queue of the same message, consumer thread on the writer's cpu.
    auto q = std::make_unique<
        boost::lockfree::spsc_queue<shm::RingMessage, boost::lockfree::capacity<4096>>>();
    std::atomic<bool> done{false};
    std::thread consumer([&] {
      pin_to_cpu(wcpu);
      shm::RingMessage m;
      while (!done.load(std::memory_order_relaxed) || q->read_available() > 0) q->pop(m);
    });
    pin_to_cpu(pcpu);
    std::vector<double> floor_ns, push_ns;
    floor_ns.reserve(pushes);
    shm::RingMessage msg{};
    msg.kind = 1;
    for (std::size_t i = 0; i < pushes; ++i) {
      msg.source_seq = i;
      const std::uint64_t t0 = ticks();
      while (!q->push(msg)) shm::cpu_relax();
      floor_ns.push_back(static_cast<double>(ticks() - t0) * npt);
    }
    done = true;
    consumer.join();
    Daemon d(seg, capacity, wcpu);
    auto p = open_producer(seg, "bench-push");
    std::vector<Update> updates;
    for (std::size_t i = 0; i < 4096; ++i)
      updates.push_back(trading_update(d.writer(), keys, rng() % capacity, i));
    pin_to_cpu(pcpu);
    push_ns.reserve(pushes);
    std::uint64_t full = 0, last = 0;
    for (std::size_t i = 0; i < pushes; ++i) {
      const std::uint64_t t0 = ticks();
      PushResult r = p->push(updates[i % updates.size()]);
      const std::uint64_t t1 = ticks();
      if (r.status == PushStatus::full) {
        ++full;
        r = p->push(updates[i % updates.size()], 1s);
      } else {
        push_ns.push_back(static_cast<double>(t1 - t0) * npt);
      }
      last = r.seq;
    }
    p->wait_applied(last, 30s);
    const Percentiles fl = percentiles(floor_ns), pu = percentiles(push_ns);
    print_row("floor: boost::lockfree::spsc_queue push, 512 B message", fl);
    print_row("Producer::push (check, hash, copy into the ring, publish)", pu,
              "  full " + std::to_string(full));
    std::printf("  ratio push p50 %.2f of the floor\n", pu.p50 / fl.p50);
  }

  // ---- 2. producer -> visible in a reader (this process reads the segment read-only) ----------
  if (section(2)) {
    const int rounds = static_cast<int>(f.num("rounds"));
    std::printf("\n2. producer -> visible to a reader, writer busy-polling on cpu %d\n", wcpu);
    std::vector<double> pp = cache_line_ping_pong(pcpu, wcpu, rounds);
    const Percentiles ping = percentiles(pp);
    std::vector<double> lat;
    {
      Daemon d(seg, capacity, wcpu);
      auto p = open_producer(seg, "bench-visible");
      Reader r = Reader::open(seg);
      pin_to_cpu(pcpu);
      const NamespaceId ns = 0;
      lat.reserve(static_cast<std::size_t>(rounds));
      Position pos;
      for (int k = 1; k <= rounds; ++k) {
        const std::size_t i = rng() % capacity;  // a random position of the table each round
        Update u = trading_update(d.writer(), keys, i, static_cast<std::uint64_t>(k));
        const int128 want = u.values[0];
        const std::uint64_t t0 = ticks();
        if (p->push(u).status != PushStatus::ok) continue;
        for (;;) {
          if (r.get(ns, keys.account[i], keys.instrument[i], pos) == ReadStatus::ok &&
              pos.values[0] == want)
            break;
          shm::cpu_relax();
        }
        lat.push_back(static_cast<double>(ticks() - t0) * npt);
      }
    }
    print_row("floor: cache line cpu" + std::to_string(pcpu) + " <-> cpu" + std::to_string(wcpu) +
                  " one way (x2 for there and back)",
              ping);
    const Percentiles v = percentiles(lat);
    print_row("push -> writer applies -> get() sees it (random positions)", v);
    // The host's own tail at this time scale: a bare cross-core round trip held as long as the
    // path's median, as many rounds, once the writer has stopped (nothing else runs).
    std::vector<double> hr =
        held_round_trip(pcpu, wcpu, rounds, std::max(0.0, v.p50 - 2 * ping.p50));
    const Percentiles held = percentiles(hr);
    print_row("floor: cpu" + std::to_string(pcpu) + " -> cpu" + std::to_string(wcpu) +
                  " -> back, held as long as the path's p50",
              held);
    std::printf(
        "  target p50 <= 1000 ns, p99.9 <= 5000 ns: p50 %.0f ns, p99.9 %.0f ns; the host's own "
        "p99.9 for a round this long: %.0f ns\n",
        v.p50, v.p999, held.p999);
  }

  // ---- 3. throughput from 1, 2, 4 producers against the writer's own upsert_batch -------------
  if (section(3)) {
    const double secs = f.real("seconds");
    std::printf(
        "\n3. applied per second into a %llu-position table (updates to random positions)\n",
        static_cast<unsigned long long>(capacity));
    Daemon d(seg, capacity, wcpu);
    d.pause(true);
    // Fill the table, then the floor: the writer's own upsert_batch over random positions.
    std::vector<Update> all;
    all.reserve(1 << 16);
    for (std::size_t i = 0; i < capacity; i += 1) {
      all.push_back(trading_update(d.writer(), keys, i, 1));
      if (all.size() == 4096 || i + 1 == capacity) {
        std::vector<ApplyResult> res(all.size());
        d.writer().upsert_batch(all, res);
        all.clear();
      }
    }
    std::vector<Update> batch;
    for (std::size_t i = 0; i < (1u << 16); ++i)
      batch.push_back(trading_update(d.writer(), keys, rng() % capacity, i));
    std::vector<ApplyResult> res(256);
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t applied = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::duration<double>(secs)) {
      for (std::size_t b = 0; b < batch.size(); b += 256) {
        d.writer().upsert_batch(std::span(batch).subspan(b, 256), res);
        applied += 256;
      }
    }
    const double floor_rate =
        static_cast<double>(applied) /
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  floor: Writer::upsert_batch, batches of 256       %8.2f M updates/s\n",
                floor_rate / 1e6);
    // The same with the key hashes a producer computed (what the ring source calls): the writer
    // skips hashing and the key's character checks, and proves the claims instead.
    {
      std::vector<std::uint64_t> hashes;
      for (const Update& u : batch)
        hashes.push_back(shm::key_hash(u.ns, u.account_view(), u.instrument_view()));
      const auto c0 = std::chrono::steady_clock::now();
      std::size_t n = 0;
      while (std::chrono::steady_clock::now() - c0 < std::chrono::duration<double>(secs)) {
        for (std::size_t b = 0; b < batch.size(); b += 256) {
          d.writer().upsert_batch(std::span(batch).subspan(b, 256),
                                  std::span(hashes).subspan(b, 256), res);
          n += 256;
        }
      }
      const double claimed_rate =
          static_cast<double>(n) /
          std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      std::printf(
          "  Writer::upsert_batch with claimed key hashes      %8.2f M updates/s  ratio %.2f\n",
          claimed_rate / 1e6, claimed_rate / floor_rate);
    }
    d.pause(false);
    for (long long n : f.list("producers")) {
      std::vector<std::unique_ptr<Producer>> ps;
      for (long long k = 0; k < n; ++k)
        ps.push_back(open_producer(seg, "bench-tp" + std::to_string(k)));
      std::atomic<bool> go{false}, stop{false};
      std::vector<std::thread> threads;
      std::vector<std::uint64_t> last(static_cast<std::size_t>(n), 0),
          start_applied(static_cast<std::size_t>(n), 0);
      for (long long k = 0; k < n; ++k) {
        threads.emplace_back([&, k] {
          pin_to_cpu(pcpu);  // every producer off the writer's core (they share cpu pcpu)
          Producer& p = *ps[static_cast<std::size_t>(k)];
          start_applied[static_cast<std::size_t>(k)] = p.applied();
          std::size_t i = static_cast<std::size_t>(k) * 977;
          while (!go.load()) {
          }
          while (!stop.load(std::memory_order_relaxed)) {
            const PushResult r = p.push(batch[i++ % batch.size()]);
            if (r.status == PushStatus::ok) last[static_cast<std::size_t>(k)] = r.seq;
          }
        });
      }
      const auto s0 = std::chrono::steady_clock::now();
      go = true;
      std::this_thread::sleep_for(std::chrono::duration<double>(secs));
      std::uint64_t got = 0;
      for (long long k = 0; k < n; ++k) got += ps[static_cast<std::size_t>(k)]->applied();
      const double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      stop = true;
      for (auto& t : threads) t.join();
      for (long long k = 0; k < n; ++k)
        ps[static_cast<std::size_t>(k)]->wait_applied(last[static_cast<std::size_t>(k)], 30s);
      const double rate = static_cast<double>(got) / el;
      std::printf(
          "  %lld producer(s) through rings                     %8.2f M updates/s  ratio %.2f of "
          "upsert_batch\n",
          n, rate / 1e6, rate / floor_rate);
    }
  }

  // ---- 4. the JSON-lines socket -----------------------------------------------------------------
  if (section(4)) {
    const auto lines = static_cast<std::size_t>(f.num("socket-lines"));
    std::printf("\n4. JSON-lines socket, one client pipelining upserts (target >= 200 k/s)\n");
    Daemon d(seg, capacity, wcpu);
    feed::SocketClient c(ingest::default_socket_path(seg));
    std::size_t sent = 0, ok = 0;
    char buf[256];
    const auto t0 = std::chrono::steady_clock::now();
    c.pipeline(
        [&](std::string& out) {
          if (sent == lines) return false;
          const std::size_t i = rng() % capacity;
          std::snprintf(
              buf, sizeof buf,
              "{\"op\":\"upsert\",\"ns\":\"spot\",\"account\":\"%s\",\"instrument\":\"%s\","
              "\"fields\":{\"qty\":\"%zu.25\",\"avg_price\":\"101.5\"}}",
              keys.account[i].c_str(), keys.instrument[i].c_str(), sent);
          out = buf;
          ++sent;
          return true;
        },
        [&](std::string_view r) { ok += r.find("applied") != std::string_view::npos; });
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %zu commands, %zu applied: %.0f k commands/s\n", sent, ok,
                static_cast<double>(ok) / el / 1e3);
  }

  // ---- 5. fill against upsert (the executor's read-modify-write) --------------------------------
  if (section(5)) {
    std::printf("\n5. fill (read, average-cost arithmetic on 256 bits, write) against upsert\n");
    WriterConfig wc = bench_config(seg + "_fill", 1 << 16);
    auto w = Writer::open(wc);
    ingest::CommandExecutor exec(*w, nullptr);
    constexpr int kOps = 200'000;
    std::vector<double> up, fi;
    up.reserve(kOps);
    fi.reserve(kOps);
    Keys k(1024);
    for (int i = 0; i < kOps; ++i) {
      const std::size_t j = static_cast<std::size_t>(i) % 1024;
      Update u = trading_update(*w, k, j, static_cast<std::uint64_t>(i));
      std::uint64_t t0 = ticks();
      w->upsert(u);
      up.push_back(static_cast<double>(ticks() - t0) * npt);
      ingest::Fill fl;
      fl.key.set(0, k.account[j], k.instrument[j]);
      fl.fill.side = i % 3 == 0 ? Side::sell : Side::buy;
      fl.fill.qty = static_cast<int128>(1 + i % 7) * 1'000'000'000'000'000'000;
      fl.fill.price = static_cast<int128>(100 + i % 13) * 1'000'000'000'000'000'000;
      fl.fill.fee = 1'000'000'000'000'000;
      t0 = ticks();
      exec.execute(fl);
      fi.push_back(static_cast<double>(ticks() - t0) * npt);
    }
    const Percentiles pu = percentiles(up), pf = percentiles(fi);
    print_row("floor: Writer::upsert of the same position", pu);
    print_row("fill through the executor", pf);
    std::printf("  ratio fill p50 %.1f x upsert\n", pf.p50 / pu.p50);
    w->close();
    boost::interprocess::shared_memory_object::remove((seg + "_fill").c_str());
  }
  // ---- 6. the Redis stream source -----------------------------------------------------------
  if (section(6)) {
    const auto n = static_cast<std::size_t>(f.num("stream-entries"));
    std::printf(
        "\n6. Redis stream source: a backlog of %zu upserts drained (read, decoded, applied, "
        "acknowledged)\n",
        n);
    test::RedisServer srv(test::RedisServer::Options{.args = {}, .cpu = pcpu});
    RedisConfig rc;
    rc.port = srv.port();
    auto client = detail::RedisClient::connect(rc);
    if (!client) {
      std::fprintf(stderr, "%s\n", client.error().c_str());
      return 1;
    }
    auto publish = [&](const std::string& stream) {
      char buf[256];
      for (std::size_t i = 0; i < n;) {
        std::size_t queued = 0;
        for (; queued < 1000 && i < n; ++queued, ++i) {
          const std::size_t k = rng() % capacity;
          std::snprintf(
              buf, sizeof buf,
              "{\"op\":\"upsert\",\"ns\":\"spot\",\"account\":\"%s\",\"instrument\":\"%s\","
              "\"fields\":{\"qty\":\"%zu.25\",\"avg_price\":\"101.5\"}}",
              keys.account[k].c_str(), keys.instrument[k].c_str(), i);
          detail::Args a;
          a.add("XADD").add(stream).add("*").add("cmd").add(buf);
          (void)client->append(a);
        }
        for (std::size_t q = 0; q < queued; ++q) (void)client->read_reply();
      }
    };
    const std::size_t batch = ingest::StreamConfig{}.batch;
    // Floor: a bare consumer on one connection, XREADGROUP then XACK of what it read.
    publish("bare");
    {
      detail::Args a;
      a.add("XGROUP").add("CREATE").add("bare").add("g").add("0");
      (void)client->command(a);
    }
    // Unpinned, as the daemon runs: the source's thread inherits this thread's affinity.
    cpu_set_t all;
    CPU_ZERO(&all);
    for (unsigned c = 0; c < std::thread::hardware_concurrency(); ++c) CPU_SET(c, &all);
    ::sched_setaffinity(0, sizeof all, &all);
    auto t0 = std::chrono::steady_clock::now();
    std::size_t got = 0;
    while (got < n) {
      detail::Args a;
      a.add("XREADGROUP").add("GROUP").add("g").add("c").add("COUNT");
      a.add(static_cast<std::uint64_t>(batch)).add("STREAMS").add("bare").add(">");
      auto r = client->command(a);
      if (!r || (*r)->type != REDIS_REPLY_ARRAY) break;
      const redisReply* entries = (*r)->element[0]->element[1];
      detail::Args ack;
      ack.add("XACK").add("bare").add("g");
      for (std::size_t e = 0; e < entries->elements; ++e)
        ack.add(std::string_view(entries->element[e]->element[0]->str,
                                 entries->element[e]->element[0]->len));
      (void)client->command(ack);
      got += entries->elements;
    }
    const double floor_rate =
        static_cast<double>(got) /
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The source, as poscache-writer runs it: its thread reads and decodes, this thread applies.
    publish("in");
    {
      auto w = Writer::open(bench_config(seg + "_stream", capacity));
      ingest::CommandExecutor exec(*w, nullptr);
      ingest::StreamConfig sc;
      sc.streams = {"in"};
      sc.group = "g";
      t0 = std::chrono::steady_clock::now();
      ingest::StreamSource source(sc, rc, w->namespaces(), seg + "_stream", w->stats().generation,
                                  nullptr);
      // The daemon's loop without --busy-poll: a round that found nothing sleeps 50 us (on two
      // CPUs a spinning apply loop would take the stream thread's or redis-server's core).
      while (source.acknowledged() < n &&
             std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
        if (source.poll(exec, 0, 256) == 0) std::this_thread::sleep_for(50us);
      const double el =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto c = source.counters();
      const double rate = static_cast<double>(source.acknowledged()) / el;
      std::printf("  floor: bare XREADGROUP + XACK, batches of %zu     %8.0f k entries/s\n", batch,
                  floor_rate / 1e3);
      std::printf(
          "  stream source (%llu applied)                %8.0f k entries/s  ratio %.2f of "
          "the floor\n",
          static_cast<unsigned long long>(c.applied), rate / 1e3, rate / floor_rate);
      w->close();
    }
    boost::interprocess::shared_memory_object::remove((seg + "_stream").c_str());
    ::unlink(("/dev/shm/" + seg + "_stream.lock").c_str());
    ::unlink(("/dev/shm/" + seg + "_stream.readers").c_str());
    ::unlink(("/dev/shm/" + seg + "_stream.streams").c_str());
  }
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  ::unlink(("/dev/shm/" + seg + "_fill.lock").c_str());
  ::unlink(("/dev/shm/" + seg + "_fill.readers").c_str());
  return 0;
}
