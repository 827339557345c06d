// Writer throughput on one thread: inserts into an empty table, updates to existing positions
// (random keys), and inserts of new keys into a full table (each evicts the least recently
// updated). Printed beside it: the same operations on a private std::unordered_map.
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <memory>
#include <random>
#include <unordered_map>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "poscache/reader.hpp"
#include "shm/clock.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {
constexpr const char* kUsage =
    "bench_writer [--capacity 1000000] [--ops 5000000] [--cpu 0] [--huge-pages 1]\n"
    "  huge-pages 0: leave the segment on 4 KiB pages (WriterConfig::huge_pages), for comparison";

void set_key(Update& u, const Keys& k, std::size_t i) {
  u.account_len = static_cast<std::uint8_t>(k.account[i].size());
  std::memcpy(u.account, k.account[i].data(), k.account[i].size());
  u.instrument_len = static_cast<std::uint8_t>(k.instrument[i].size());
  std::memcpy(u.instrument, k.instrument[i].data(), k.instrument[i].size());
}

void report(const char* what, std::size_t ops, std::int64_t ns, double floor_rate) {
  const double rate = static_cast<double>(ops) / (static_cast<double>(ns) / 1e9);
  std::printf("  %-52s %7.2f M ops/s  (%5.0f ns/op)", what, rate / 1e6, 1e9 / rate);
  if (floor_rate > 0) std::printf("   private unordered_map: %6.2f M ops/s", floor_rate / 1e6);
  std::printf("\n");
  std::fflush(stdout);
}

// One operation's key, as a producer's ring would hold it: the update phases read these in order,
// so the benchmark's own key lookups (random entries of a 3 M-entry vector of strings) do not add
// cache misses to the writer's figures; the floor reads its keys the same way.
struct KeyRec {
  std::uint8_t account_len, instrument_len;
  char account[14], instrument[16];
};
static_assert(sizeof(KeyRec) == 32);

void set_key(Update& u, const KeyRec& k) {
  u.account_len = k.account_len;
  std::memcpy(u.account, k.account, sizeof k.account);
  u.instrument_len = k.instrument_len;
  std::memcpy(u.instrument, k.instrument, sizeof k.instrument);
}

struct Value256 {
  char bytes[256];
};
}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv,
          {{"capacity", "1000000"}, {"ops", "5000000"}, {"cpu", "0"}, {"huge-pages", "1"}}, kUsage);
  const std::size_t cap = static_cast<std::size_t>(f.num("capacity"));
  const std::size_t ops = static_cast<std::size_t>(f.num("ops"));
  pin_to_cpu(static_cast<int>(f.num("cpu")));
  Keys keys(cap * 3);  // the first `cap` fill the table; the rest are new keys for eviction
  std::mt19937_64 rng(5);
  std::vector<std::uint32_t> upd_idx(ops), new_idx(ops);
  for (auto& i : upd_idx) i = static_cast<std::uint32_t>(rng() % cap);
  for (std::size_t k = 0; k < ops; ++k)
    new_idx[k] = static_cast<std::uint32_t>(cap + (k % (2 * cap)));
  std::vector<KeyRec> upd_keys(ops);
  std::vector<std::string> upd_flat(
      ops);  // the floor's keys, in the same order (each fits the SSO)
  for (std::size_t k = 0; k < ops; ++k) {
    const std::string& a = keys.account[upd_idx[k]];
    const std::string& i = keys.instrument[upd_idx[k]];
    if (a.size() > sizeof(KeyRec::account) || i.size() > sizeof(KeyRec::instrument)) {
      std::fprintf(stderr, "bench_writer: key longer than the benchmark's records\n");
      return 1;
    }
    KeyRec& r = upd_keys[k];
    r = KeyRec{};
    r.account_len = static_cast<std::uint8_t>(a.size());
    r.instrument_len = static_cast<std::uint8_t>(i.size());
    std::memcpy(r.account, a.data(), a.size());
    std::memcpy(r.instrument, i.data(), i.size());
    upd_flat[k] = a + ":" + i;
  }

  // Floor: the same three phases on a private hash map (no eviction order kept: a lower bound).
  double floor_fill = 0, floor_update = 0;
  {
    std::unordered_map<std::string, std::unique_ptr<Value256>> m;
    m.reserve(cap);
    std::vector<std::string> flat(cap);
    for (std::size_t i = 0; i < cap; ++i) flat[i] = keys.account[i] + ":" + keys.instrument[i];
    std::int64_t t0 = shm::monotonic_ns();
    for (std::size_t i = 0; i < cap; ++i) m.emplace(flat[i], std::make_unique<Value256>());
    floor_fill = static_cast<double>(cap) / (static_cast<double>(shm::monotonic_ns() - t0) / 1e9);
    t0 = shm::monotonic_ns();
    for (std::size_t k = 0; k < ops; ++k) m.find(upd_flat[k])->second->bytes[k & 255] = 1;
    floor_update = static_cast<double>(ops) / (static_cast<double>(shm::monotonic_ns() - t0) / 1e9);
  }

  const std::string seg = "poscache_bench_writer_" + std::to_string(::getpid());
  WriterConfig config = bench_config(seg, cap);
  config.huge_pages = f.num("huge-pages") != 0;
  auto w = Writer::open(config);
  std::printf(
      "bench_writer: capacity %zu, %zu ops per phase, one thread pinned to cpu %lld; segment on "
      "%s\n",
      cap, ops, f.num("cpu"),
      segment_pages(w->stats().huge_page_bytes, w->stats().segment_bytes).c_str());
  Update u = trading_update(*w, keys, 0, 1);

  std::int64_t t0 = shm::monotonic_ns();
  for (std::size_t i = 0; i < cap; ++i) {
    set_key(u, keys, i);
    u.values[0] = static_cast<int128>(i);
    w->upsert(u);
  }
  report("inserts into an empty table", cap, shm::monotonic_ns() - t0, floor_fill);

  t0 = shm::monotonic_ns();
  for (std::size_t k = 0; k < ops; ++k) {
    set_key(u, upd_keys[k]);
    u.values[0] = static_cast<int128>(k);
    w->upsert(u);
    if ((k & 4095) == 0) w->tick();
  }
  report("updates to existing positions (random keys), upsert()", ops, shm::monotonic_ns() - t0,
         floor_update);

  // The same through upsert_batch(), as a producer draining a ring applies them.
  constexpr std::size_t kBatch = 256;
  std::vector<Update> batch(kBatch, u);
  std::vector<ApplyResult> results(kBatch);
  t0 = shm::monotonic_ns();
  for (std::size_t k = 0; k < ops; k += kBatch) {
    const std::size_t n = std::min(kBatch, ops - k);
    for (std::size_t j = 0; j < n; ++j) {
      set_key(batch[j], upd_keys[k + j]);
      batch[j].values[0] = static_cast<int128>(k + j);
    }
    w->upsert_batch(std::span(batch.data(), n), results);
    w->tick();
  }
  report("updates to existing positions (random keys), upsert_batch()", ops,
         shm::monotonic_ns() - t0, floor_update);

  // What recording each change in the change ring costs: the same updates with the ring on and
  // off (the writer re-opened on the same segment each time), alternating, twice.
  std::printf("change ring on / off (updates to existing positions, random keys):\n");
  for (int round = 0; round < 2; ++round) {
    for (const bool ring : {true, false}) {
      w.reset();
      config.change_ring = ring;
      config.fresh = false;  // the same positions: every op below is an update
      w = Writer::open(config);
      t0 = shm::monotonic_ns();
      for (std::size_t k = 0; k < ops; k += kBatch) {
        const std::size_t n = std::min(kBatch, ops - k);
        for (std::size_t j = 0; j < n; ++j) {
          set_key(batch[j], upd_keys[k + j]);
          batch[j].values[0] = static_cast<int128>(k + j + round);
        }
        w->upsert_batch(std::span(batch.data(), n), results);
        w->tick();
      }
      const std::int64_t batch_ns = shm::monotonic_ns() - t0;
      t0 = shm::monotonic_ns();
      for (std::size_t k = 0; k < ops; ++k) {
        set_key(u, upd_keys[k]);
        u.values[0] = static_cast<int128>(k + round);
        w->upsert(u);
        if ((k & 4095) == 0) w->tick();
      }
      const std::int64_t single_ns = shm::monotonic_ns() - t0;
      std::printf("  ring %-3s  upsert_batch() %6.2f M ops/s   upsert() %6.2f M ops/s\n",
                  ring ? "on" : "off",
                  static_cast<double>(ops) / static_cast<double>(batch_ns) * 1e3,
                  static_cast<double>(ops) / static_cast<double>(single_ns) * 1e3);
    }
  }
  std::printf("  private unordered_map floor: %6.2f M ops/s\n", floor_update / 1e6);
  config.change_ring = true;

  // Eviction churn: every insert evicts, so tombstones grow by one per insert and the index is
  // rebuilt a slice at a time (writer/index_rebuild.hpp). Each insert is timed on its own.
  const WriterStats before_churn = w->stats();
  std::vector<double> insert_ticks(ops);
  t0 = shm::monotonic_ns();
  for (std::size_t k = 0; k < ops; ++k) {
    set_key(u, keys, new_idx[k]);
    const std::uint64_t c0 = ticks();
    w->upsert(u);
    insert_ticks[k] = static_cast<double>(ticks() - c0);
    if ((k & 4095) == 0) w->tick();
  }
  report("inserts of new keys into a full table (each evicts), upsert()", ops,
         shm::monotonic_ns() - t0, 0);
  const WriterStats churn = w->stats();
  Percentiles ip = percentiles(insert_ticks);
  const double tick_ns = ns_per_tick();
  std::printf(
      "  evicting inserts, one per sample: p50 %.0f  p99 %.0f  p99.9 %.0f  p99.99 %.0f  max %.0f "
      "ns\n",
      ip.p50 * tick_ns, ip.p99 * tick_ns, ip.p999 * tick_ns, ip.p9999 * tick_ns, ip.max * tick_ns);
  std::printf(
      "longest index maintenance %.1f us (%llu positions, eviction churn; %llu rebuilds in %llu "
      "slices)\n",
      static_cast<double>(churn.index_step_longest_ns) / 1e3, static_cast<unsigned long long>(cap),
      static_cast<unsigned long long>(churn.index_rebuilds - before_churn.index_rebuilds),
      static_cast<unsigned long long>(churn.index_rebuild_slices -
                                      before_churn.index_rebuild_slices));
  std::printf("  operations that did index maintenance, by its time:");
  for (std::size_t b = 0; b < churn.index_step_counts.size(); ++b) {
    const std::uint64_t n = churn.index_step_counts[b] - before_churn.index_step_counts[b];
    if (b < WriterStats::kIndexStepBoundsNs.size())
      std::printf(" <=%gus %llu", static_cast<double>(WriterStats::kIndexStepBoundsNs[b]) / 1e3,
                  static_cast<unsigned long long>(n));
    else
      std::printf(" more %llu\n", static_cast<unsigned long long>(n));
  }
  // The floor for any "longest": how long this host stops a thread that only reads the clock,
  // pinned to the same CPU, for as long as the churn above ran. A longest below it cannot be
  // shown here; the counts above show where the slices' time really lies.
  const Stalls host = stalls(static_cast<double>(shm::monotonic_ns() - t0) / 1e9);
  std::printf(
      "  floor: a clock-reading loop on the same CPU for %.1f s stalled %llu times over 20 us, "
      "%llu over 50 us, longest %.1f us\n",
      host.seconds, static_cast<unsigned long long>(host.over_20us),
      static_cast<unsigned long long>(host.over_50us), host.longest_ns / 1e3);
  t0 = shm::monotonic_ns();
  for (std::size_t k = 0; k < ops; k += kBatch) {
    const std::size_t n = std::min(kBatch, ops - k);
    for (std::size_t j = 0; j < n; ++j)
      set_key(batch[j], keys, cap + ((new_idx[k + j] + cap) % (2 * cap)));
    w->upsert_batch(std::span(batch.data(), n), results);
    w->tick();
  }
  report("inserts of new keys into a full table (each evicts), upsert_batch()", ops,
         shm::monotonic_ns() - t0, 0);
  const WriterStats st = w->stats();
  std::printf(
      "  (evictions %llu, index rebuilds %llu, each spread over removals a slice at a time)\n",
      static_cast<unsigned long long>(st.evictions),
      static_cast<unsigned long long>(st.index_rebuilds));
  w.reset();
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  return 0;
}
