// Portfolio reads: Reader::snapshot(account) and positions_of(account) for accounts of 20 and of
// 200 positions in a table of N (1 M by default), with a writer process updating random
// positions at --rate per second meanwhile. Printed beside them, from the same run: the floor, a
// private-memory std::unordered_map<account, std::vector<Position>> looked up and copied into the
// caller's vector (the same work without shared memory, seqlocks or cache misses on a table
// another core writes).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <random>
#include <unordered_map>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "shm/cpu_relax.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {

constexpr const char* kUsage =
    "bench_accounts [--size 1000000] [--big 200] [--samples 20000] [--rate 100000]\n"
    "               [--reader-cpu 1] [--writer-cpu 0]\n"
    "  The table holds --big accounts of 200 positions, the rest in accounts of 20 (trading\n"
    "  preset, every field set). rate: writer updates/s to random positions while measuring.";

std::string account_name(bool big, std::size_t k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, big ? "big%05zu" : "acct%07zu", k);
  return buf;
}

struct Layout {
  std::size_t big = 0, small = 0;  // accounts of 200, of 20
  std::size_t positions() const { return big * 200 + small * 20; }
};

Update position(const Writer& w, const std::string& account, std::size_t i, std::uint64_t v) {
  int128 values[kMaxFields] = {};
  for (int f = 0; f < 7; ++f)
    values[f] = static_cast<int128>(v + static_cast<std::uint64_t>(f)) * 1'000'000'000'000'000;
  return *w.make_update(NamespaceId{0}, account, "I" + std::to_string(i), 0x7F, values, 0,
                        UpdateMode::merge);
}

// The writer process: fills the table, says so, then updates random positions at `rate`/s.
[[noreturn]] void run_writer(const std::string& seg, std::size_t capacity, Layout l, double rate,
                             int cpu, int ready_fd) {
  pin_to_cpu(cpu);
  auto w = Writer::open(bench_config(seg, capacity));
  std::vector<Update> batch;
  std::vector<ApplyResult> results(4096);
  auto flush = [&] {
    w->upsert_batch(batch, results);
    batch.clear();
  };
  for (std::size_t a = 0; a < l.big + l.small; ++a) {
    const bool big = a < l.big;
    const std::string acct = account_name(big, big ? a : a - l.big);
    for (std::size_t i = 0; i < (big ? 200u : 20u); ++i) {
      batch.push_back(position(*w, acct, i, a + i));
      if (batch.size() == 4096) flush();
    }
  }
  flush();
  w->tick();
  const char ok = 'R';
  [[maybe_unused]] auto wr = ::write(ready_fd, &ok, 1);
  std::mt19937_64 rng(99);
  std::uint64_t done = 0;
  const std::int64_t start = shm::monotonic_ns();
  for (std::uint64_t iter = 0;; ++iter) {
    if (rate > 0) {
      const double due = static_cast<double>(shm::monotonic_ns() - start) * rate / 1e9;
      while (static_cast<double>(done) < due) {
        const std::size_t a = rng() % (l.big + l.small);
        const bool big = a < l.big;
        w->upsert(
            position(*w, account_name(big, big ? a : a - l.big), rng() % (big ? 200 : 20), done));
        ++done;
      }
    }
    if ((iter & 255) == 0) w->tick();
    shm::cpu_relax();
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags(argc, argv,
              {{"size", "1000000"},
               {"big", "200"},
               {"samples", "20000"},
               {"rate", "100000"},
               {"reader-cpu", "1"},
               {"writer-cpu", "0"}},
              kUsage);
  const std::size_t size = static_cast<std::size_t>(flags.num("size"));
  Layout l;
  l.big = static_cast<std::size_t>(flags.num("big"));
  l.small = (size - std::min(size, l.big * 200)) / 20;
  const std::size_t samples = static_cast<std::size_t>(flags.num("samples"));
  const double rate = flags.real("rate");
  const std::string seg = "poscache_bench_accounts_" + std::to_string(::getpid());
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  int fds[2];
  if (::pipe(fds) != 0) return 1;
  const pid_t writer = ::fork();
  if (writer == 0) {
    run_writer(seg, size, l, rate, static_cast<int>(flags.num("writer-cpu")), fds[1]);
  }
  char c = 0;
  if (::read(fds[0], &c, 1) != 1) {
    std::fprintf(stderr, "bench_accounts: the writer failed to fill the table\n");
    return 1;
  }
  pin_to_cpu(static_cast<int>(flags.num("reader-cpu")));
  Reader r = Reader::open(seg);
  const double tick_ns = ns_per_tick();
  std::printf(
      "bench_accounts: %zu positions (%zu accounts of 200, %zu of 20), writer updating "
      "%.0f/s; CPU %s; %s\n",
      l.positions(), l.big, l.small, rate, cpu_name().c_str(),
      segment_pages(r.huge_page_bytes(), r.stats().segment_bytes).c_str());

  // The floor's map: every measured account's positions, copied out of the segment once.
  std::unordered_map<std::string, std::vector<Position>> floor;
  std::vector<Position> out;
  for (std::size_t k = 0; k < l.big; ++k) {
    const std::string a = account_name(true, k);
    r.snapshot(a, out);
    floor[a] = out;
  }
  for (std::size_t k = 0; k < l.small; ++k) {
    const std::string a = account_name(false, k);
    r.snapshot(a, out);
    floor[a] = out;
  }
  std::mt19937_64 rng(5);
  for (const bool big : {false, true}) {
    const std::size_t accounts = big ? l.big : l.small;
    if (accounts == 0) continue;
    const char* size_name = big ? "200" : "20";
    // Each of the three reads its own random accounts: none finds another's lines in cache.
    std::vector<std::string> picks(samples), picks_of(samples), picks_floor(samples);
    for (std::size_t i = 0; i < samples; ++i) {
      picks[i] = account_name(big, rng() % accounts);
      picks_of[i] = account_name(big, rng() % accounts);
      picks_floor[i] = account_name(big, rng() % accounts);
    }
    std::vector<double> snap_ns, of_ns, floor_ns, hot_ns;
    std::size_t busy = 0, wrong = 0;
    out.reserve(256);
    for (int round = 0; round < 2; ++round) {  // alternate, so drift hits all three alike
      for (std::size_t i = 0; i < samples; ++i) {
        const std::string& a = picks[i];
        std::uint64_t t0 = ticks_ordered();
        const ReadStatus st = r.snapshot(a, out);
        std::uint64_t t1 = ticks_ordered();
        snap_ns.push_back(static_cast<double>(t1 - t0) * tick_ns);
        if (!has_value(st)) ++busy;
        if (out.size() != (big ? 200u : 20u)) ++wrong;
        t0 = ticks_ordered();
        r.snapshot(a, out);  // again: every line it needs is in this core's cache now
        t1 = ticks_ordered();
        hot_ns.push_back(static_cast<double>(t1 - t0) * tick_ns);
        t0 = ticks_ordered();
        const std::vector<Position> got = r.positions_of(picks_of[i]);
        t1 = ticks_ordered();
        of_ns.push_back(static_cast<double>(t1 - t0) * tick_ns);
        t0 = ticks_ordered();
        const auto it = floor.find(picks_floor[i]);
        out.assign(it->second.begin(), it->second.end());
        t1 = ticks_ordered();
        floor_ns.push_back(static_cast<double>(t1 - t0) * tick_ns);
      }
    }
    const Percentiles ps = percentiles(snap_ns), po = percentiles(of_ns),
                      pf = percentiles(floor_ns);
    print_row(std::string("snapshot(account of ") + size_name + ")", ps,
              busy || wrong ? "  (" + std::to_string(busy) + " not ok, " + std::to_string(wrong) +
                                  " wrong size)"
                            : "");
    Percentiles ph = percentiles(hot_ns);
    print_row(std::string("snapshot(account of ") + size_name + "), again at once (cached)", ph);
    print_row(std::string("positions_of(account of ") + size_name + ")", po);
    print_row(std::string("floor: unordered_map<account, vector<Position>> of ") + size_name, pf);
    std::printf("  snapshot per position %.1f ns (floor %.1f); p50 ratio %.2f of the floor\n",
                ps.p50 / (big ? 200 : 20), pf.p50 / (big ? 200 : 20), ps.p50 / pf.p50);
  }
  ::kill(writer, SIGKILL);
  ::waitpid(writer, nullptr, 0);
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  return 0;
}
