// Multi-process torture: one writer process churns inserts, updates, evictions, erases and
// invalidations while reader processes check every copy they get. Payloads check themselves:
// field i of a position is x * (i + 1) + k(key), so a torn copy, or a copy of another key's
// slot, fails the check. "Pinned" positions are present for the whole run (updated every round,
// never erased, never the least recently updated): any not_found for them is a false miss.
// With --kill-every-ms the writer is killed with SIGKILL again and again mid-churn and a new one
// re-attaches; readers keep reading throughout. Each kill is aimed at the seqlock's mid-write
// window: the parent stops the writer (SIGSTOP) over and over until it catches it with a slot
// odd and the undo record armed for it, and kills it there (or, after 4000 tries, wherever it
// is). Each successor must open, re-attach (the header's restart count goes up by one) and
// repair exactly the slot a mid-write kill left odd.
//
//   torture [--reads N] [--readers R] [--capacity C] [--kill-every-ms MS] [--seconds S]
//           [--min-repairs N] [--min-rebuilds N] [--segment NAME]
// Exit 0 only with zero torn reads, zero false misses, at least N self-checked copies (--reads
// counts copies verified, not lookups), every successor opened and repaired as its kill requires,
// at least --min-repairs repairs and --min-rebuilds index rebuilds, the last writer exiting 0 on
// SIGTERM, and a consistent segment at the end.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"
#include "tests/torture/torture_flags.hpp"
#include "tools/verify.hpp"

using namespace poscache;

namespace {

constexpr int kPinned = 256;
constexpr int kChurnAccounts = 400;
constexpr int kChurnInstruments = 50;
constexpr int kFields = 16;

struct Options {
  std::uint64_t reads = 10'000'000;
  int readers = 3;
  std::uint64_t capacity = 4096;
  int kill_every_ms = 0;
  double seconds = 0;  // readers also keep going at least this long
  std::uint64_t min_repairs = 0;
  std::uint64_t min_rebuilds = 0;
  std::size_t batch = 1;  // > 1: readers read through get_many, this many keys a call
  std::string segment;
};

WriterConfig config(const Options& o) {
  NamespaceSpec pin{"pin", {}, {}, {}};
  for (int i = 0; i < kFields; ++i)
    pin.fields.push_back({"f" + std::to_string(i), FieldType::decimal, 0});
  NamespaceSpec churn = pin;
  churn.name = "churn";
  WriterConfig c;
  c.segment = o.segment;
  c.capacity = o.capacity;
  c.namespaces = {pin, churn};
  c.heartbeat_interval = std::chrono::milliseconds(5);
  return c;
}

std::string pin_account(int i) {
  return "p" + std::to_string(i % 64);
}
std::string pin_instrument(int i) {
  return "I" + std::to_string(i / 64);
}
std::string churn_account(std::uint64_t i) {
  return "c" + std::to_string(i % kChurnAccounts);
}
std::string churn_instrument(std::uint64_t i) {
  return "J" + std::to_string(i % kChurnInstruments);
}

int128 key_tag(std::string_view account, std::string_view instrument) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : account) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  h = (h ^ ':') * 1099511628211ull;
  for (char c : instrument) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return static_cast<int128>(h >> 20);
}

Update payload(const Writer& w, NamespaceId ns, const std::string& a, const std::string& i,
               std::uint64_t x) {
  int128 v[kMaxFields];
  const int128 k = key_tag(a, i);
  // x up to 2^62: x * 16 + k exceeds 64 bits, so the high word of the mantissa is exercised too.
  for (int f = 0; f < kFields; ++f) v[f] = static_cast<int128>(x) * (f + 1) + k;
  return *w.make_update(ns, a, i, 0xFFFF, v, 0, UpdateMode::replace);
}

bool self_consistent(const Position& p, std::string_view a, std::string_view i) {
  if (p.fields_set != 0xFFFF || p.account_view() != a || p.instrument_view() != i) return false;
  const int128 k = key_tag(a, i);
  const int128 x = p.values[0] - k;
  for (int f = 0; f < kFields; ++f) {
    if (p.values[f] != x * (f + 1) + k) return false;
  }
  return true;
}

// The writer: open (create or re-attach), then churn until killed or told to stop.
volatile sig_atomic_t g_writer_stop = 0;

[[noreturn]] void run_writer(const Options& o, std::uint64_t seed) {
  // The handler first: a SIGTERM that lands while open() re-attaches must not kill the writer
  // half way (the segment would be left as a crash leaves it, for the final verify to see).
  std::signal(SIGTERM, [](int) { g_writer_stop = 1; });
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, nullptr);  // blocked by fork_writer() until the handler was set
  auto w = Writer::open(config(o));
  std::mt19937_64 rng(seed);
  const NamespaceId pin = 0, churn = 1;
  const int churn_per_round =
      static_cast<int>(std::min<std::uint64_t>(1024, (o.capacity - kPinned) / 2));
  std::vector<Update> pinned_batch;
  std::vector<ApplyResult> pinned_results(kPinned);
  std::vector<Update> churn_batch;
  std::vector<ApplyResult> churn_results(2048);
  auto flush = [&] {
    if (churn_batch.empty()) return;
    w->upsert_batch(churn_batch, churn_results);
    churn_batch.clear();
  };
  for (std::uint64_t round = 0; !g_writer_stop; ++round) {
    // Pinned positions: every other round through upsert_batch (the prefetching path), else one
    // by one, so both apply paths run under the readers.
    if (round % 2 == 0) {
      pinned_batch.clear();
      for (int i = 0; i < kPinned; ++i)
        pinned_batch.push_back(payload(*w, pin, pin_account(i), pin_instrument(i), rng() >> 2));
      w->upsert_batch(pinned_batch, pinned_results);
    } else {
      for (int i = 0; i < kPinned; ++i)
        w->upsert(payload(*w, pin, pin_account(i), pin_instrument(i), rng() >> 2));
    }
    for (int c = 0; c < churn_per_round; ++c) {
      const std::uint64_t r = rng();
      const std::string a = churn_account(r >> 16);
      const std::string i = churn_instrument(r >> 32);
      const std::uint64_t which = r % 100'000;
      if (which < 94'000) {  // inserts (evicting once the table is full) and updates
        if (round % 2 == 0) {
          churn_batch.push_back(payload(*w, churn, a, i, rng() >> 2));  // applied in runs
        } else {
          w->upsert(payload(*w, churn, a, i, rng() >> 2));
        }
        continue;
      }
      flush();  // keep apply order: pending upserts before this erase or invalidation
      if (which < 99'800) {
        w->erase(KeyRef{churn, a, i});
      } else if (which < 99'970) {
        w->invalidate_account(a);
      } else if (which < 99'995) {
        w->invalidate_matching("churn:c" + std::to_string(r % 10) + "*:*");
      } else {
        w->invalidate_namespace(churn);
      }
    }
    flush();
    w->tick();
  }
  w->close();
  std::_Exit(0);
}

// Forks a writer with SIGTERM blocked until its handler is installed, so no SIGTERM can kill it
// between fork and open().
pid_t fork_writer(const Options& o, std::uint64_t seed) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &old);
  const pid_t pid = ::fork();
  if (pid == 0) run_writer(o, seed);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return pid;
}

struct ReaderTally {
  std::uint64_t reads = 0, verified = 0, torn = 0, false_misses = 0, busy = 0, dead = 0,
                churn_misses = 0;
};

[[noreturn]] void run_reader(const Options& o, std::uint64_t reads, int out_fd,
                             std::uint64_t seed) {
  ReaderTally t;
  Reader r = Reader::open(o.segment);
  std::mt19937_64 rng(seed);
  Position p;
  std::vector<std::string> pa, pi;
  for (int i = 0; i < kPinned; ++i) {
    pa.push_back(pin_account(i));
    pi.push_back(pin_instrument(i));
  }
  std::vector<std::string> ca, ci;
  for (int i = 0; i < kChurnAccounts; ++i)
    ca.push_back(churn_account(static_cast<std::uint64_t>(i)));
  for (int i = 0; i < kChurnInstruments; ++i)
    ci.push_back(churn_instrument(static_cast<std::uint64_t>(i)));
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.seconds);
  // Until `reads` copies were verified (misses of churned keys verify nothing and do not count).
  auto classify = [&](ReadStatus st, const Position& got, bool pinned, std::string_view a,
                      std::string_view i) {
    if (has_value(st)) {
      ++t.verified;
      if (!self_consistent(got, a, i)) ++t.torn;
    } else if (st == ReadStatus::not_found) {
      if (pinned)
        ++t.false_misses;
      else
        ++t.churn_misses;
    } else if (st == ReadStatus::writer_busy) {
      ++t.busy;
    } else if (st == ReadStatus::writer_dead) {
      ++t.dead;
    } else {
      ++t.torn;  // bad_key / retired cannot happen here: count as a failure
    }
  };
  const std::size_t batch = std::max<std::size_t>(1, o.batch);
  std::vector<Reader::Key> keys(batch);
  std::vector<bool> pinned(batch);
  std::vector<Position> out(batch);
  std::vector<ReadStatus> status(batch);
  // Until `reads` copies were verified (misses of churned keys verify nothing and do not count).
  while (t.verified < reads || t.reads % 4096 != 0 || std::chrono::steady_clock::now() < until) {
    for (std::size_t k = 0; k < batch; ++k) {
      const std::uint64_t x = rng();
      pinned[k] = (x & 1) != 0;
      keys[k] = {pinned[k] ? NamespaceId{0} : NamespaceId{1},
                 pinned[k] ? pa[(x >> 8) % kPinned] : ca[(x >> 8) % kChurnAccounts],
                 pinned[k] ? pi[(x >> 8) % kPinned] : ci[(x >> 24) % kChurnInstruments]};
    }
    if (batch == 1) {
      status[0] = r.get(keys[0].ns, keys[0].account, keys[0].instrument, out[0]);
    } else {
      r.get_many(keys, out, status);
    }
    for (std::size_t k = 0; k < batch; ++k, ++t.reads) {
      classify(status[k], out[k], pinned[k], keys[k].account, keys[k].instrument);
    }
  }
  [[maybe_unused]] auto n = ::write(out_fd, &t, sizeof t);
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.segment = "poscache_torture_" + std::to_string(::getpid());
  test::TortureFlags flags(
      "torture",
      "usage: torture [--reads N] [--readers R] [--capacity C] [--kill-every-ms MS] "
      "[--seconds S] "
      "[--min-repairs N] [--min-rebuilds N] [--batch B] [--segment NAME]");
  flags.value("--reads", o.reads)
      .value("--readers", o.readers)
      .value("--capacity", o.capacity)
      .value("--kill-every-ms", o.kill_every_ms)
      .value("--segment", o.segment)
      .value("--seconds", o.seconds)
      .value("--min-repairs", o.min_repairs)
      .value("--min-rebuilds", o.min_rebuilds)
      .value("--batch", o.batch);
  flags.parse(argc, argv);
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  std::uint64_t seed = 12345;

  // First writer: wait until the segment is ready before starting readers.
  pid_t writer = fork_writer(o, seed);
  for (int tries = 0;; ++tries) {
    try {
      Reader probe = Reader::open(o.segment);
      if (probe.stats().live >= kPinned) break;
    } catch (const Error&) {
    }
    if (tries > 5000) {
      std::fprintf(stderr, "torture: the writer never made the segment ready\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 1;
  std::vector<pid_t> readers;
  for (int r = 0; r < o.readers; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0)
      run_reader(o, o.reads / static_cast<std::uint64_t>(o.readers), pipefd[1],
                 seed + 1000 + static_cast<std::uint64_t>(r));
    readers.push_back(pid);
  }
  ::close(pipefd[1]);

  // Optionally kill the writer again and again; a new one re-attaches each time. Readers that
  // finished are reaped here, so the loop ends when the last one has exited.
  int kills = 0, mid_write_kills = 0, successor_failures = 0;
  std::vector<int> reader_status(readers.size(), -1);
  auto reap = [&](bool block) {
    bool all = true;
    for (std::size_t k = 0; k < readers.size(); ++k) {
      if (reader_status[k] != -1) continue;
      int st = 0;
      if (::waitpid(readers[k], &st, block ? 0 : WNOHANG) == readers[k]) {
        reader_status[k] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      } else {
        all = false;
      }
    }
    return all;
  };
  // The parent's own read-only view of the segment (layout structs): the writer's pid and state,
  // the restart and repair counters, the undo record and the slots' sequences.
  const int seg_fd = ::shm_open(("/" + o.segment).c_str(), O_RDONLY, 0);
  struct stat seg_st {};
  if (seg_fd < 0 || ::fstat(seg_fd, &seg_st) != 0) {
    std::fprintf(stderr, "torture: cannot open the segment: %s\n", std::strerror(errno));
    return 1;
  }
  void* seg_map =
      ::mmap(nullptr, static_cast<std::size_t>(seg_st.st_size), PROT_READ, MAP_SHARED, seg_fd, 0);
  ::close(seg_fd);
  if (seg_map == MAP_FAILED) {
    std::fprintf(stderr, "torture: cannot map the segment: %s\n", std::strerror(errno));
    return 1;
  }
  const auto* hdr = static_cast<const shm::SegmentHeader*>(seg_map);
  const auto* slots =
      reinterpret_cast<const shm::Slot*>(static_cast<const char*>(seg_map) + hdr->slots_offset);
  const auto* warea = reinterpret_cast<const shm::WriterArea*>(static_cast<const char*>(seg_map) +
                                                               hdr->writer_offset);
  // Waits until writer `pid` has opened the segment and turned it ready.
  bool writer_reaped = false;  // the current writer died on its own (wait_ready reaped it)
  auto wait_ready = [&](pid_t pid) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (shm::load_acquire(&hdr->writer_pid) == pid &&
          shm::load_acquire(&hdr->state) == static_cast<std::uint32_t>(shm::SegmentState::ready)) {
        return true;
      }
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {  // it died opening
        writer_reaped = true;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
  };
  // Stops the writer until it is caught between SW1 and SW4 of a slot write, then kills it there,
  // still stopped. Returns whether it was caught mid-write (after 4000 tries it is killed where
  // the last one stopped it, and the successor must then repair nothing).
  std::mt19937_64 hunt_rng(seed ^ 0x5eed);
  auto kill_mid_write = [&](pid_t pid) {
    bool caught = false;
    for (int attempt = 0; attempt < 4000 && !caught; ++attempt) {
      if (::kill(pid, SIGSTOP) != 0) break;
      int st = 0;
      if (::waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st)) break;
      const std::uint64_t armed = shm::load_acquire(&warea->undo.slot_plus_one);
      caught =
          armed != 0 && armed <= o.capacity && (shm::load_acquire(&slots[armed - 1].seq) & 1) != 0;
      // The last try kills it stopped too, so what it left is exactly what was just looked at.
      if (!caught && attempt + 1 < 4000) {
        ::kill(pid, SIGCONT);
        const auto spin =
            std::chrono::steady_clock::now() + std::chrono::microseconds(hunt_rng() % 50);
        while (std::chrono::steady_clock::now() < spin) {
        }
      }
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return caught;
  };
  if (o.kill_every_ms > 0) {
    std::mt19937_64 rng(seed);
    if (!wait_ready(writer)) ++successor_failures;
    // Until the readers are done and at least --min-repairs kills caught a write in progress (a
    // loaded host restarts writers slowly, so fewer kills fit in --seconds), at most 1000 kills.
    auto done = [&] {
      return reap(false) &&
             (static_cast<std::uint64_t>(mid_write_kills) >= o.min_repairs || kills >= 1000);
    };
    while (!done()) {
      const auto wait = std::chrono::milliseconds(
          o.kill_every_ms / 2 +
          static_cast<int>(rng() % static_cast<std::uint64_t>(o.kill_every_ms)));
      std::this_thread::sleep_for(wait);
      if (done()) break;
      const std::uint64_t restarts_before = shm::load_acquire(&hdr->writer_restarts);
      const std::uint64_t repairs_before = shm::load_acquire(&hdr->counters.repairs);
      const bool mid_write = kill_mid_write(writer);
      ++kills;
      mid_write_kills += mid_write;
      writer = fork_writer(o, ++seed);
      // The successor must open, count one restart and repair exactly the slot left odd.
      const bool ready = wait_ready(writer);
      const std::uint64_t restarts = shm::load_acquire(&hdr->writer_restarts) - restarts_before;
      const std::uint64_t repairs = shm::load_acquire(&hdr->counters.repairs) - repairs_before;
      if (!ready || restarts != 1 || repairs != (mid_write ? 1u : 0u)) {
        std::fprintf(stderr, "torture: kill %d (%s): successor %s, %llu restarts, %llu repairs\n",
                     kills, mid_write ? "mid-write" : "between writes",
                     ready ? "ready" : "NEVER READY", static_cast<unsigned long long>(restarts),
                     static_cast<unsigned long long>(repairs));
        ++successor_failures;
        if (!ready) break;
      }
    }
  }
  ReaderTally total;
  for (int r = 0; r < o.readers; ++r) {
    ReaderTally t;
    if (::read(pipefd[0], &t, sizeof t) != static_cast<ssize_t>(sizeof t)) {
      std::fprintf(stderr, "torture: a reader died without reporting\n");
      return 1;
    }
    total.reads += t.reads;
    total.verified += t.verified;
    total.torn += t.torn;
    total.false_misses += t.false_misses;
    total.busy += t.busy;
    total.dead += t.dead;
    total.churn_misses += t.churn_misses;
  }
  reap(true);
  bool readers_ok = true;
  for (int st : reader_status) readers_ok = readers_ok && st == 0;
  int wst = 0;
  if (!writer_reaped) {
    ::kill(writer, SIGTERM);
    ::waitpid(writer, &wst, 0);
  }
  const bool last_writer_ok = !writer_reaped && WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
  if (!last_writer_ok) {
    std::printf("torture: the last writer did not exit 0 on SIGTERM (%s %d)\n",
                WIFEXITED(wst) ? "exit" : "signal",
                WIFEXITED(wst) ? WEXITSTATUS(wst) : WTERMSIG(wst));
  }

  Reader r = Reader::open(o.segment);
  const tools::VerifyReport rep = tools::verify(r);
  const SegmentStats s = r.stats();
  std::printf(
      "torture: %d reader processes, %llu reads, %llu copies verified, %llu torn, %llu false "
      "misses "
      "(pinned keys), %llu churn misses, %llu writer_busy, %llu writer_dead\n",
      o.readers, static_cast<unsigned long long>(total.reads),
      static_cast<unsigned long long>(total.verified), static_cast<unsigned long long>(total.torn),
      static_cast<unsigned long long>(total.false_misses),
      static_cast<unsigned long long>(total.churn_misses),
      static_cast<unsigned long long>(total.busy), static_cast<unsigned long long>(total.dead));
  std::printf(
      "torture: writer applied %llu inserts, %llu updates, %llu evictions, %llu erases, %llu "
      "invalidations, "
      "%llu index rebuilds; killed %d times, %d of them mid-write (%llu restarts, %llu slots "
      "repaired, "
      "%d successors failed)\n",
      static_cast<unsigned long long>(s.inserts), static_cast<unsigned long long>(s.updates),
      static_cast<unsigned long long>(s.evictions), static_cast<unsigned long long>(s.erases),
      static_cast<unsigned long long>(s.invalidations),
      static_cast<unsigned long long>(s.index_rebuilds), kills, mid_write_kills,
      static_cast<unsigned long long>(s.writer.restarts),
      static_cast<unsigned long long>(s.repairs), successor_failures);
  std::printf("torture: verify: %llu live positions, %zu problems\n",
              static_cast<unsigned long long>(rep.live_slots), rep.problems.size());
  for (const auto& p : rep.problems) std::printf("torture: PROBLEM %s\n", p.c_str());
  // Every pinned position survived every kill.
  int pinned_present = 0;
  Position p;
  for (int i = 0; i < kPinned; ++i)
    pinned_present += has_value(r.get(NamespaceId{0}, pin_account(i), pin_instrument(i), p));
  std::printf("torture: %d of %d pinned positions present at the end\n", pinned_present, kPinned);
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  ::unlink(("/dev/shm/" + o.segment + ".lock").c_str());
  ::unlink(("/dev/shm/" + o.segment + ".readers").c_str());
  const std::uint64_t verified_target =
      o.reads / static_cast<std::uint64_t>(o.readers) * static_cast<std::uint64_t>(o.readers);
  struct Check {
    bool ok;
    const char* what;
  };
  const Check checks[] = {
      {readers_ok, "every reader process exited 0"},
      {total.torn == 0, "no torn or wrong copy"},
      {total.false_misses == 0, "no false miss of a pinned key"},
      {total.verified >= verified_target, "the copies verified reach --reads"},
      {rep.problems.empty(), "verify found no problem"},
      {pinned_present == kPinned, "every pinned position present at the end"},
      {last_writer_ok, "the last writer exited 0 on SIGTERM"},
      {successor_failures == 0,
       "every successor opened, re-attached and repaired what its kill left"},
      {s.writer.restarts == static_cast<std::uint64_t>(kills), "one restart counted per kill"},
      {s.repairs >= o.min_repairs, "at least --min-repairs slots repaired"},
      {s.index_rebuilds >= o.min_rebuilds, "at least --min-rebuilds index rebuilds"},
  };
  bool ok = true;
  for (const Check& c : checks) {
    if (!c.ok) std::printf("torture: FAILED: %s\n", c.what);
    ok = ok && c.ok;
  }
  std::printf("torture: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
