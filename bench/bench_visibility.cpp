// Update -> visible: the writer (pinned to one core) applies an update; a reader spinning on
// the other core notices it. Measured with the invariant TSC on both sides. Beside it, from the
// same run, the floor: one cache line handed from one core to the other (ping-pong / 2).
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <thread>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "shm/cpu_relax.hpp"

using namespace poscache;
using namespace poscache::bench;

int main(int argc, char** argv) {
  Flags f(argc, argv, {{"rounds", "200000"}, {"writer-cpu", "0"}, {"reader-cpu", "1"}},
          "bench_visibility [--rounds 200000] [--writer-cpu 0] [--reader-cpu 1]");
  const int rounds = static_cast<int>(f.num("rounds"));
  const int wcpu = static_cast<int>(f.num("writer-cpu")),
            rcpu = static_cast<int>(f.num("reader-cpu"));
  std::vector<double> pp = cache_line_ping_pong(wcpu, rcpu, rounds);
  const Percentiles ping = percentiles(pp);
  std::printf("bench_visibility: %d rounds, writer cpu %d, reader cpu %d, TSC %.3f ns/tick\n",
              rounds, wcpu, rcpu, ns_per_tick());
  print_row("floor: cache line cpu" + std::to_string(wcpu) + " -> cpu" + std::to_string(rcpu) +
                " (ping-pong / 2)",
            ping);

  const std::string seg = "poscache_bench_vis_" + std::to_string(::getpid());
  WriterConfig config = bench_config(seg, 1024);
  config.wake_interval = std::chrono::nanoseconds(0);  // tick() wakes blocked readers every time
  auto w = Writer::open(config);
  Keys keys(64);
  for (std::size_t i = 0; i < 64; ++i) w->upsert(trading_update(*w, keys, i, 0));
  Reader r = Reader::open(seg);

  for (int mode = 0; mode < 4; ++mode) {
    std::vector<std::uint64_t> sent(static_cast<std::size_t>(rounds)),
        seen(static_cast<std::size_t>(rounds));
    alignas(64) std::atomic<int> ack{-1};
    std::thread reader([&] {
      pin_to_cpu(rcpu);
      Position p;
      std::uint64_t at = r.change_position();
      std::vector<Change> changes;
      for (int k = 0; k < rounds; ++k) {
        ack.store(k, std::memory_order_release);  // ready for round k
        const auto want = static_cast<int128>(k + 1);
        if (mode == 0) {  // spin on get() until the new value shows
          while (!(has_value(r.get(NamespaceId{0}, keys.account[5], keys.instrument[5], p)) &&
                   p.values[0] == want)) {
          }
        } else if (mode == 1) {  // spin on the change sequence (one load), then get()
          for (;;) {
            const std::uint64_t seq = r.change_sequence();
            (void)seq;
            if (has_value(r.get(NamespaceId{0}, keys.account[5], keys.instrument[5], p)) &&
                p.values[0] == want)
              break;
            while (r.change_sequence() == seq) {
            }
          }
        } else {  // follow the change ring: spin on its head (2) or block in the futex (3)
          for (bool found = false; !found;) {
            if (mode == 2) {
              while (r.change_position() == at) {
              }
            } else {
              r.wait_for_changes(at, std::chrono::seconds(1));
            }
            at = r.changes(at, changes).next;
            for (const Change& c : changes) found |= c.account_view() == keys.account[5];
          }
        }
        seen[static_cast<std::size_t>(k)] = ticks_ordered();
      }
    });
    pin_to_cpu(wcpu);
    Update u = trading_update(*w, keys, 5, 0);
    for (int k = 0; k < rounds; ++k) {
      while (ack.load(std::memory_order_acquire) != k) {
      }
      for (int spin = 0; spin < 200; ++spin)
        shm::cpu_relax();  // let the reader settle into its loop
      u.values[0] = static_cast<int128>(k + 1);
      sent[static_cast<std::size_t>(k)] = ticks_ordered();
      w->upsert(u);
      if (mode == 3) w->tick();  // the wake (a FUTEX_WAKE system call)
    }
    reader.join();
    pin_to_cpu(-1);
    std::vector<double> lat(static_cast<std::size_t>(rounds));
    for (std::size_t k = 0; k < lat.size(); ++k)
      lat[k] = static_cast<double>(seen[k] - sent[k]) * ns_per_tick();
    const Percentiles p = percentiles(lat);
    char extra[64];
    std::snprintf(extra, sizeof extra, "  p50 = %.1fx the floor", p.p50 / ping.p50);
    static constexpr const char* kWhat[] = {
        "upsert -> visible to a reader spinning on get()",
        "upsert -> visible, reader spinning on change_sequence()",
        "upsert -> its record read, reader spinning on change_position()",
        "upsert + tick -> its record read, reader blocked in wait_for_changes()"};
    print_row(kWhat[mode], p, extra);
  }
  w.reset();
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  return 0;
}
