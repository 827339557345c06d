// get() latency: hits on N positions, random keys and a hot set, with 0..K extra reader
// processes, while a writer process applies a chosen rate of updates to existing positions.
// Printed beside it, from the same run: the same lookups in a plain private-memory hash table
// (std::unordered_map, 256-byte values) and a cross-core cache-line ping-pong.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <memory>
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
    "bench_get [--sizes 10000,1000000] [--readers 0,1,2] [--rate 1000000] [--gets 2000000]\n"
    "          [--batch 16] [--hot 1024] [--reader-cpu 1] [--writer-cpu 0]\n"
    "  rate: writer updates/s to existing positions during the measurement (0 = idle writer)\n"
    "  Every case is timed twice with the TSC (rdtscp, 0.4 ns here): one lookup per sample (its\n"
    "  latency) and the mean of --batch consecutive lookups (what the CPU sustains when it can\n"
    "  overlap one lookup's cache misses with the next one's).";

// The writer process: creates and fills the segment, says so on `ready_fd`, then applies
// `rate` updates/s to random existing positions until killed.
[[noreturn]] void run_writer(const std::string& seg, std::size_t n, double rate, int cpu,
                             int ready_fd) {
  pin_to_cpu(cpu);
  auto w = Writer::open(bench_config(seg, n));
  Keys keys(n);
  for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i));
  w->tick();
  const char ok = 'R';
  [[maybe_unused]] auto wr = ::write(ready_fd, &ok, 1);
  std::mt19937_64 rng(99);
  std::uint64_t done = 0;
  const std::int64_t start = shm::monotonic_ns();
  Update u = trading_update(*w, keys, 0, 1);
  for (std::uint64_t iter = 0;; ++iter) {
    if (rate > 0) {
      const double due = static_cast<double>(shm::monotonic_ns() - start) * rate / 1e9;
      while (static_cast<double>(done) < due) {
        const std::size_t i = rng() % n;
        u.account_len = static_cast<std::uint8_t>(keys.account[i].size());
        std::memcpy(u.account, keys.account[i].data(), keys.account[i].size());
        u.instrument_len = static_cast<std::uint8_t>(keys.instrument[i].size());
        std::memcpy(u.instrument, keys.instrument[i].data(), keys.instrument[i].size());
        u.values[0] = static_cast<int128>(done);
        w->upsert(u);
        ++done;
      }
    }
    if ((iter & 255) == 0) w->tick();
    shm::cpu_relax();
  }
}

// An extra reader process: random gets forever.
[[noreturn]] void run_reader(const std::string& seg, std::size_t n) {
  Reader r = Reader::open(seg);
  Keys keys(n);
  std::mt19937_64 rng(7);
  Position p;
  for (;;) {
    const std::size_t i = rng() % n;
    r.get(NamespaceId{0}, keys.account[i], keys.instrument[i], p);
  }
}

std::vector<std::uint32_t> pattern(std::size_t n, std::size_t count, std::size_t hot,
                                   std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint32_t> idx(count);
  for (auto& i : idx) i = static_cast<std::uint32_t>(rng() % (hot ? std::min(hot, n) : n));
  if (hot) {  // a hot set spread over the table, not the first slots
    std::vector<std::uint32_t> map(std::min(hot, n));
    for (auto& m : map) m = static_cast<std::uint32_t>(rng() % n);
    for (auto& i : idx) i = map[i];
  }
  return idx;
}

// The keys of one measurement, in the order they are looked up, laid out contiguously: a
// trading process has the key it asks for in hand (in cache), so the benchmark must not pay a
// cache miss to fetch it. Both poscache and the floor read their keys this way.
struct AccessKey {
  char account[15];
  std::uint8_t account_len;
  char instrument[7];
  std::uint8_t instrument_len;
  [[nodiscard]] std::string_view a() const { return {account, account_len}; }
  [[nodiscard]] std::string_view i() const { return {instrument, instrument_len}; }
};

std::vector<AccessKey> access_keys(const Keys& keys, const std::vector<std::uint32_t>& idx) {
  std::vector<AccessKey> out(idx.size());
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const std::string& a = keys.account[idx[k]];
    const std::string& i = keys.instrument[idx[k]];
    std::memcpy(out[k].account, a.data(), a.size());
    out[k].account_len = static_cast<std::uint8_t>(a.size());
    std::memcpy(out[k].instrument, i.data(), i.size());
    out[k].instrument_len = static_cast<std::uint8_t>(i.size());
  }
  return out;
}

template <class Fn>
std::vector<double> time_batches(std::size_t count, std::size_t batch, Fn&& fn) {
  std::vector<double> samples;
  samples.reserve(count / batch);
  const double npt = ns_per_tick();
  for (std::size_t b = 0; b + batch <= count; b += batch) {
    const std::uint64_t t0 = ticks_ordered();
    for (std::size_t k = 0; k < batch; ++k) fn(b + k);
    const std::uint64_t t1 = ticks_ordered();
    samples.push_back(static_cast<double>(t1 - t0) * npt / static_cast<double>(batch));
  }
  return samples;
}

struct Value256 {
  char bytes[256];
};

}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv,
          {{"sizes", "10000,1000000"},
           {"readers", "0,1,2"},
           {"rate", "1000000"},
           {"gets", "2000000"},
           {"batch", "16"},
           {"hot", "1024"},
           {"reader-cpu", "1"},
           {"writer-cpu", "0"}},
          kUsage);
  const std::size_t batch = static_cast<std::size_t>(f.num("batch"));
  const std::size_t gets = static_cast<std::size_t>(f.num("gets"));
  const double rate = f.real("rate");
  const int reader_cpu = static_cast<int>(f.num("reader-cpu"));
  std::printf(
      "bench_get: %zu gets per case, timed in batches of %zu (per-get mean of each batch), TSC "
      "%.3f ns/tick\n",
      gets, batch, ns_per_tick());

  std::vector<double> pp = cache_line_ping_pong(0, 1, 200000);
  const Percentiles ping = percentiles(pp);
  std::printf("floor: cross-core cache-line transfer, one way\n");
  print_row("ping-pong cpu0 <-> cpu1", ping);

  for (long long size : f.list("sizes")) {
    const std::size_t n = static_cast<std::size_t>(size);
    const std::string seg = "poscache_bench_get_" + std::to_string(::getpid());
    Keys keys(n);
    const auto random_idx = pattern(n, gets, 0, 1);
    const auto hot_idx = pattern(n, gets, static_cast<std::size_t>(f.num("hot")), 2);
    const auto random_keys = access_keys(keys, random_idx);
    const auto hot_keys = access_keys(keys, hot_idx);

    double floor_batch_mean = 0;  // the private map's mean per lookup in batches (get_many's floor)
    // Floor: a private std::unordered_map of the same keys, 256-byte values behind a pointer.
    {
      std::unordered_map<std::string, std::unique_ptr<Value256>> map;
      map.reserve(n);
      for (std::size_t i = 0; i < n; ++i)
        map.emplace(keys.account[i] + ":" + keys.instrument[i], std::make_unique<Value256>());
      // Keys in access order (SSO strings: the text sits inside the vector, read sequentially).
      auto flat = [&](const std::vector<std::uint32_t>& idx) {
        std::vector<std::string> v(idx.size());
        for (std::size_t k = 0; k < idx.size(); ++k)
          v[k] = keys.account[idx[k]] + ":" + keys.instrument[idx[k]];
        return v;
      };
      const auto flat_random = flat(random_idx), flat_hot = flat(hot_idx);
      Value256 out;
      std::uint64_t sink = 0;
      pin_to_cpu(reader_cpu);
      std::printf(
          "\n%zu positions\nfloor: private-memory std::unordered_map lookup + 256-byte copy\n", n);
      for (const std::size_t b : {std::size_t{1}, batch}) {
        const std::string how = b == 1 ? "one per sample" : "mean of " + std::to_string(b);
        auto r1 = time_batches(gets, b, [&](std::size_t k) {
          std::memcpy(&out, map.find(flat_random[k])->second.get(), sizeof out);
          sink += static_cast<unsigned char>(out.bytes[k & 255]);
        });
        const Percentiles pr1 = percentiles(r1);
        print_row("unordered_map, random keys, " + how, pr1);
        if (b == batch) floor_batch_mean = pr1.mean;
        auto r2 = time_batches(gets, b, [&](std::size_t k) {
          std::memcpy(&out, map.find(flat_hot[k])->second.get(), sizeof out);
          sink += static_cast<unsigned char>(out.bytes[k & 255]);
        });
        print_row("unordered_map, hot set of " + std::to_string(f.num("hot")) + ", " + how,
                  percentiles(r2));
      }
      if (sink == 42) std::printf(" ");
      pin_to_cpu(-1);
    }

    int pipefd[2];
    if (::pipe(pipefd) != 0) return 1;
    const pid_t writer = ::fork();
    if (writer == 0) run_writer(seg, n, rate, static_cast<int>(f.num("writer-cpu")), pipefd[1]);
    char ready = 0;
    if (::read(pipefd[0], &ready, 1) != 1) {
      std::fprintf(stderr, "bench_get: the writer did not start\n");
      return 1;
    }
    Reader r = Reader::open(seg);
    const SegmentStats st0 = r.stats();
    std::printf(
        "poscache: segment %.1f MiB for %zu positions = %.0f bytes per position (index, "
        "bookkeeping and journal "
        "included), mapped by this reader on %s\n",
        static_cast<double>(st0.segment_bytes) / (1 << 20), n,
        static_cast<double>(st0.segment_bytes) / static_cast<double>(n),
        segment_pages(r.huge_page_bytes(), st0.segment_bytes).c_str());
    for (long long extra : f.list("readers")) {
      std::vector<pid_t> readers;
      for (long long k = 0; k < extra; ++k) {
        const pid_t p = ::fork();
        if (p == 0) run_reader(seg, n);
        readers.push_back(p);
      }
      pin_to_cpu(reader_cpu);
      Position pos;
      std::uint64_t statuses[8] =
          {};  // by ReadStatus: every key is present, so only ok is expected
      for (const std::size_t b : {std::size_t{1}, batch}) {
        const std::uint64_t u0 = r.stats().updates;
        const std::int64_t t0 = shm::monotonic_ns();
        auto s1 = time_batches(gets, b, [&](std::size_t k) {
          ++statuses[static_cast<int>(
              r.get(NamespaceId{0}, random_keys[k].a(), random_keys[k].i(), pos))];
        });
        auto s2 = time_batches(gets, b, [&](std::size_t k) {
          ++statuses[static_cast<int>(
              r.get(NamespaceId{0}, hot_keys[k].a(), hot_keys[k].i(), pos))];
        });
        const double secs = static_cast<double>(shm::monotonic_ns() - t0) / 1e9;
        const double achieved = static_cast<double>(r.stats().updates - u0) / secs;
        const std::string how = b == 1 ? "one per sample" : "mean of " + std::to_string(b);
        char label[200];
        std::snprintf(label, sizeof label, "get() random, %lld extra rdr, writer %.2f M/s, %s",
                      extra, achieved / 1e6, how.c_str());
        print_row(label, percentiles(s1));
        std::snprintf(label, sizeof label, "get() hot %lld, %lld extra rdr, writer %.2f M/s, %s",
                      f.num("hot"), extra, achieved / 1e6, how.c_str());
        print_row(label, percentiles(s2));
      }
      pin_to_cpu(-1);
      // writer_busy: the writer was descheduled mid-write (more runnable processes than cores)
      // and a read gave up after its bounded spin, as the contract says. not_found would be a bug.
      std::printf("  statuses: ok %llu, writer_busy %llu, writer_dead %llu, not_found %llu%s\n",
                  static_cast<unsigned long long>(statuses[0] + statuses[1]),
                  static_cast<unsigned long long>(statuses[3]),
                  static_cast<unsigned long long>(statuses[4]),
                  static_cast<unsigned long long>(statuses[2]),
                  statuses[2] ? "  <-- FALSE MISSES" : "");
      for (pid_t p : readers) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0);
      }
    }
    {
      // Reader statistics (poscache/reader_stats.hpp): the same random keys read through a
      // Reader that counts into its record of the reader table and one that does not, in
      // alternating rounds of the same run, the writer still updating.
      ReaderOptions off;
      off.statistics = false;
      const Reader counted = Reader::open(seg), uncounted = Reader::open(seg, off);
      std::printf("reader statistics (this reader %s): counting on vs off, same keys, same run\n",
                  counted.counting() ? "counts" : "CANNOT count");
      pin_to_cpu(reader_cpu);
      Position pos;
      std::vector<double> on, offs;
      for (int round = 0; round < 4; ++round) {
        for (const Reader* rd : {&counted, &uncounted}) {
          auto s = time_batches(gets / 4, 1, [&](std::size_t k) {
            const std::size_t i = (k + static_cast<std::size_t>(round) * (gets / 4)) % gets;
            (void)rd->get(NamespaceId{0}, random_keys[i].a(), random_keys[i].i(), pos);
          });
          auto& into = rd == &counted ? on : offs;
          into.insert(into.end(), s.begin(), s.end());
        }
      }
      pin_to_cpu(-1);
      const Percentiles pon = percentiles(on), poff = percentiles(offs);
      print_row("get() random, counting on", pon);
      print_row("get() random, counting off", poff);
      std::printf("counting ratio %.3f of uncounted get() at p50 (%.1f vs %.1f ns), %.3f at p99\n",
                  pon.p50 / poff.p50, pon.p50, poff.p50, pon.p99 / poff.p99);
    }
    {
      // get_many: batches of random keys read together, their misses overlapped, against
      // get() of the same keys one at a time, in alternating rounds of the same run (the host's
      // load drifts: rounds side by side see the same), the writer still updating.
      pin_to_cpu(reader_cpu);
      std::printf("get_many: random keys in batches, mean per get (4 alternating rounds)\n");
      std::vector<Reader::Key> many_keys(gets);
      for (std::size_t k = 0; k < gets; ++k)
        many_keys[k] = {NamespaceId{0}, random_keys[k].a(), random_keys[k].i()};
      const double npt = ns_per_tick();
      std::vector<double> singles, batched16, batched64;
      std::uint64_t unread = 0;
      Position one;
      const std::size_t round_len = gets / 4;
      for (std::size_t round = 0; round < 4; ++round) {
        const std::size_t from = round * round_len;
        auto s = time_batches(round_len, 1, [&](std::size_t k) {
          (void)r.get(NamespaceId{0}, random_keys[from + k].a(), random_keys[from + k].i(), one);
        });
        singles.insert(singles.end(), s.begin(), s.end());
        for (const std::size_t b : {std::size_t{16}, std::size_t{64}}) {
          std::vector<Position> out(b);
          std::vector<ReadStatus> st(b);
          auto& into = b == 16 ? batched16 : batched64;
          for (std::size_t k = from; k + b <= from + round_len; k += b) {
            const std::uint64_t t0 = ticks_ordered();
            r.get_many(std::span(many_keys).subspan(k, b), out, st);
            const std::uint64_t t1 = ticks_ordered();
            into.push_back(static_cast<double>(t1 - t0) * npt / static_cast<double>(b));
            for (const ReadStatus x : st) unread += !has_value(x);
          }
        }
      }
      const Percentiles ps = percentiles(singles), p16 = percentiles(batched16),
                        p64 = percentiles(batched64);
      print_row("get() one at a time", ps);
      print_row("get_many() of 16, per get", p16);
      print_row("get_many() of 64, per get", p64);
      if (unread)
        std::printf("  %llu keys not read (writer busy?)\n",
                    static_cast<unsigned long long>(unread));
      std::printf(
          "get_many ratio %.2f of get() (%zu positions, random keys; batches of 16, mean "
          "%.0f vs %.0f ns; of 64: %.2f; the private map's batch mean %.0f ns)\n",
          p16.mean / ps.mean, n, p16.mean, ps.mean, p64.mean / ps.mean, floor_batch_mean);
      pin_to_cpu(-1);
    }
    ::kill(writer, SIGKILL);
    ::waitpid(writer, nullptr, 0);
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    ::unlink(("/dev/shm/" + seg + ".readers").c_str());
    ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  }
  return 0;
}
