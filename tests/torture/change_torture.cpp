// Multi-process torture of the change ring (shm/change_ring.hpp): one writer process churns
// positions (upserts, batches, erases, evictions, expiries, invalidations by account, glob and
// namespace), optionally killed with -9 and restarted; follower processes keep their own copy
// of the segment from Reader::changes() alone (plus get() for the values a record announces,
// and a full scan whenever they are told to resync), sleeping now and then so the ring laps them.
//
// Every record is checked as it is read: its key is one the writer uses (the instrument carries
// a check of the account: a record mixing two records' cells fails it), the versions of records
// that take a new one (inserts, updates, erases, patterns) only grow, and get() of an upserted
// key returns that version or a later one (the change is visible once its record is). At the
// end the writer closes, the followers read the ring to its head, and each one's copy must equal
// the segment exactly, key by key and version by version: a change the ring dropped, or told
// nobody about, leaves a difference.
//
//   change_torture [--seconds S] [--followers F] [--capacity C] [--kill-every-ms K]
//                  [--min-laps N] [--min-records N]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "tests/torture/torture_flags.hpp"

using namespace poscache;
using namespace std::chrono_literals;

namespace {

constexpr int kAccounts = 100;
constexpr int kInstruments = 40;  // 4000 keys in "book" alone: more than the capacity

struct Options {
  double seconds = 4;
  int followers = 2;
  std::uint64_t capacity = 2048;
  int kill_every_ms = 0;
  std::uint64_t min_laps = 1;
  std::uint64_t min_records = 100000;
  std::string segment;
};

int check_of(int a, int j) {
  return (a * 31 + j * 17) % 97;
}
// Keys long enough to span several words of a cell, each part derived from (a, j): a copy that
// mixes the words of two records fails genuine().
std::string account(int a) {
  return "a" + std::to_string(a) + "-" + std::string(20, static_cast<char>('A' + a % 26));
}
std::string instrument(int a, int j) {
  return "j" + std::to_string(j) + "x" + std::to_string(check_of(a, j)) + "-" +
         std::string(20, static_cast<char>('a' + (a + j) % 26));
}
// True if `acct`/`instr` is a key the writer makes.
bool genuine(std::string_view acct, std::string_view instr) {
  if (acct.size() < 2 || acct[0] != 'a' || instr.size() < 2 || instr[0] != 'j') return false;
  int a = 0, j = 0;
  for (std::size_t i = 1; i < acct.size() && acct[i] >= '0' && acct[i] <= '9' && a < 100000; ++i)
    a = a * 10 + (acct[i] - '0');
  for (std::size_t i = 1; i < instr.size() && instr[i] >= '0' && instr[i] <= '9' && j < 100000; ++i)
    j = j * 10 + (instr[i] - '0');
  return acct == account(a) && instr == instrument(a, j);
}

WriterConfig config(const Options& o) {
  NamespaceSpec book{
      "book", {{"qty", FieldType::decimal, 0}, {"check", FieldType::decimal, 0}}, {}, {}};
  NamespaceSpec quote = book;
  quote.name = "quote";
  quote.stale_after = 20ms;
  quote.expire_after = 20ms;
  WriterConfig c;
  c.segment = o.segment;
  c.capacity = o.capacity;
  c.namespaces = {book, quote};
  c.heartbeat_interval = 5ms;
  c.wake_interval = 50us;
  return c;
}

Update position(const Writer& w, NamespaceId ns, int a, int j, int128 qty) {
  const int128 v[2] = {qty, qty * 7 + check_of(a, j)};
  return *w.make_update(ns, account(a), instrument(a, j), 0b11, v, 0, UpdateMode::replace);
}

volatile sig_atomic_t g_stop = 0;

[[noreturn]] void run_writer(const Options& o, std::uint64_t seed) {
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, nullptr);
  auto w = Writer::open(config(o));
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  while (!g_stop) {
    for (int step = 0; step < 64; ++step) {
      const std::uint64_t r = rng();
      const int a = static_cast<int>(r % kAccounts), j = static_cast<int>((r >> 8) % kInstruments);
      const NamespaceId ns = (r >> 16) % 10 == 0 ? 1 : 0;
      const auto qty = static_cast<int128>((r >> 24) % 100000);
      const std::uint64_t what = (r >> 44) % 10000;
      if (what < 7000) {
        w->upsert(position(*w, ns, a, j, qty));
      } else if (what < 8500) {
        w->erase(KeyRef{ns, account(a), instrument(a, j)});
      } else if (what < 9950) {  // a batch: published once, at its end
        ops.clear();
        for (int k = 0; k < 4; ++k) {
          const std::uint64_t q = rng();
          const int b = static_cast<int>(q % kAccounts), i = static_cast<int>((q >> 8) % 40);
          if (k == 3 && q % 4 == 0)
            ops.emplace_back(Erase{KeyRef{0, account(b), instrument(b, i)}});
          else
            ops.emplace_back(position(*w, 0, b, i, static_cast<int128>(q >> 40)));
        }
        if (!w->apply(ops).applied) std::_Exit(4);
      } else if (what < 9980) {
        w->invalidate_account(account(a), (r & 1) ? std::optional<NamespaceId>(0) : std::nullopt);
      } else if (what < 9995) {
        w->invalidate_matching("book:a" + std::to_string(a % 10) + "?:j1*");
      } else {
        w->invalidate_namespace(1);
      }
    }
    w->tick();
  }
  w->close();
  std::_Exit(0);
}

struct Tally {
  std::uint64_t records = 0, probed = 0, foreign = 0, version_order = 0, invisible = 0,
                torn_values = 0, laps = 0, restarts = 0, resyncs = 0, mismatches = 0, compared = 0;
};

struct Copy {
  std::uint64_t version;
  int128 qty;
};
using Mirror = std::map<std::string, Copy>;  // "ns:account:instrument"

std::string key_of(const Reader& r, NamespaceId ns, std::string_view a, std::string_view i) {
  return r.namespaces()[ns].name + ":" + std::string(a) + ":" + std::string(i);
}

// A full copy of the segment. A slot caught mid-write is skipped by scan(): read again until
// none is (a killed writer's slot stays so until its successor repairs it, and then the
// successor's restart marker asks for another resync anyway).
void full_state(const Reader& r, Mirror& m, Tally& t) {
  for (int attempt = 0;; ++attempt) {
    m.clear();
    const Reader::ScanResult res = r.scan({}, [&](const Position& p) {
      if (p.values[1] !=
          p.values[0] * 7 + check_of(std::stoi(std::string(p.account_view()).substr(1)),
                                     std::stoi(std::string(p.instrument_view()).substr(1))))
        ++t.torn_values;
      m[key_of(r, p.ns, p.account_view(), p.instrument_view())] = {p.version, p.values[0]};
    });
    if (res.skipped_mid_write == 0 || attempt == 1000) return;
    std::this_thread::sleep_for(1ms);
  }
}

[[noreturn]] void run_follower(const Options& o, int out_fd, std::uint64_t seed) {
  Tally t;
  Reader r = Reader::open(o.segment);
  std::mt19937_64 rng(seed);
  std::vector<Change> batch, probe;
  const std::uint64_t cells = r.change_ring_cells();
  Mirror mirror;
  std::uint64_t at = r.change_position();
  full_state(r, mirror, t);
  std::uint64_t last_fresh_version = 0;
  Position p;
  auto probe_edge = [&] {
    // Probes at the ring's oldest records, the cells the writer is overwriting right now (the
    // records it writes ahead of the head replace them): what a probe is handed must still be
    // whole (genuine keys, versions in order), or reported.
    for (int k = 0; k < 32; ++k) {
      const std::uint64_t head = r.change_position();
      if (head <= cells + 8) break;
      r.changes(head - cells + rng() % 4, probe, 4);
      std::uint64_t v = 0;
      for (const Change& c : probe) {
        ++t.probed;
        if (c.kind == ChangeKind::evicted || c.kind == ChangeKind::expired) continue;
        if (c.version <= v) ++t.version_order;
        v = c.version;
        if ((!c.is_removal() || c.kind == ChangeKind::erased) &&
            !genuine(c.account_view(), c.instrument_view()))
          ++t.foreign;
      }
    }
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.seconds);
  bool draining = false;
  for (;;) {
    if (!draining && std::chrono::steady_clock::now() >= until) draining = true;
    if (draining) {
      // The writer closes after the followers' time: then the ring is final.
      const std::string state = r.stats().state;
      if (state == "closed" && r.change_position() == at) break;
      if (state != "closed") std::this_thread::sleep_for(1ms);
    } else if (rng() % 300 == 0) {
      // Fall behind until the ring has lapped this follower (at most 2 s), whatever the rate.
      const auto give_up = std::chrono::steady_clock::now() + 2s;
      while (r.change_position() - at <= cells + rng() % 64 &&
             std::chrono::steady_clock::now() < give_up)
        probe_edge();
    } else {
      r.wait_for_changes(at, 2ms);
    }
    probe_edge();
    const ChangesResult res = r.changes(at, batch, 1 + rng() % 5000);
    bool unread = false;
    for (const Change& c : batch) {
      ++t.records;
      const bool takes_version = c.kind != ChangeKind::evicted && c.kind != ChangeKind::expired;
      if (takes_version) {
        if (c.version <= last_fresh_version) ++t.version_order;
        last_fresh_version = c.version;
      }
      switch (c.kind) {
        case ChangeKind::inserted:
        case ChangeKind::updated: {
          if (!genuine(c.account_view(), c.instrument_view())) {
            ++t.foreign;
            break;
          }
          const std::string k = key_of(r, c.ns, c.account_view(), c.instrument_view());
          ReadStatus st = r.get(c.ns, c.account_view(), c.instrument_view(), p);
          for (int tries = 0;
               tries < 100 && (st == ReadStatus::writer_busy || st == ReadStatus::writer_dead);
               ++tries) {
            std::this_thread::sleep_for(100us);
            st = r.get(c.ns, c.account_view(), c.instrument_view(), p);
          }
          if (has_value(st)) {
            if (p.version < c.version) ++t.invisible;
            if (p.values[1] !=
                p.values[0] * 7 + check_of(std::stoi(std::string(c.account_view()).substr(1)),
                                           std::stoi(std::string(c.instrument_view()).substr(1))))
              ++t.torn_values;
            mirror[k] = {p.version, p.values[0]};
          } else if (st == ReadStatus::not_found) {
            mirror.erase(k);  // removed since: its record follows
          } else {
            unread = true;  // still mid-write (a killed writer's slot): resync after the batch
          }
          break;
        }
        case ChangeKind::erased:
        case ChangeKind::evicted:
        case ChangeKind::expired:
          if (!genuine(c.account_view(), c.instrument_view())) {
            ++t.foreign;
            break;
          }
          mirror.erase(key_of(r, c.ns, c.account_view(), c.instrument_view()));
          break;
        default:  // a pattern
          for (auto it = mirror.begin(); it != mirror.end();) {
            const std::string& k = it->first;
            const auto c1 = k.find(':'), c2 = k.find(':', c1 + 1);
            const std::string ns = k.substr(0, c1);
            const NamespaceId id = ns == "book" ? 0 : 1;
            if (c.covers(id, ns, std::string_view(k).substr(c1 + 1, c2 - c1 - 1),
                         std::string_view(k).substr(c2 + 1)))
              it = mirror.erase(it);
            else
              ++it;
          }
      }
    }
    at = res.next;
    if (res.status != ChangeStatus::ok || unread) {
      if (res.status == ChangeStatus::lapped) ++t.laps;
      if (res.status == ChangeStatus::writer_restarted) ++t.restarts;
      ++t.resyncs;
      full_state(r, mirror, t);  // after learning `next`: every later change is in the ring
      last_fresh_version = 0;
    }
  }
  // The final comparison: the copy kept from the ring against the segment.
  Mirror truth;
  full_state(r, truth, t);
  for (const auto& [k, c] : truth) {
    auto it = mirror.find(k);
    if (it == mirror.end() || it->second.version != c.version || it->second.qty != c.qty) {
      if (t.mismatches < 5)
        std::fprintf(stderr, "change_torture: follower differs at %s (%s)\n", k.c_str(),
                     it == mirror.end() ? "missing" : "other version");
      ++t.mismatches;
    }
  }
  for (const auto& [k, c] : mirror) {
    if (!truth.count(k)) {
      if (t.mismatches < 5)
        std::fprintf(stderr, "change_torture: follower still has %s\n", k.c_str());
      ++t.mismatches;
    }
  }
  t.compared = truth.size();
  if (::write(out_fd, &t, sizeof t) != static_cast<ssize_t>(sizeof t)) std::_Exit(3);
  std::_Exit(0);
}

pid_t start_writer(const Options& o, std::uint64_t seed) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &old);
  const pid_t pid = ::fork();
  if (pid == 0) run_writer(o, seed);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.segment = "poscache_change_torture_" + std::to_string(::getpid());
  test::TortureFlags flags("change_torture",
                           "usage: change_torture [--seconds S] [--followers F] [--capacity C] "
                           "[--kill-every-ms K] [--min-laps N] [--min-records N]");
  flags.value("--seconds", o.seconds)
      .value("--followers", o.followers)
      .value("--capacity", o.capacity)
      .value("--kill-every-ms", o.kill_every_ms)
      .value("--min-laps", o.min_laps)
      .value("--min-records", o.min_records);
  flags.parse(argc, argv);
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  pid_t writer = start_writer(o, 777);
  for (int tries = 0;; ++tries) {
    try {
      Reader probe = Reader::open(o.segment);
      break;
    } catch (const Error&) {
    }
    if (tries > 5000) {
      std::fprintf(stderr, "change_torture: the writer never made the segment ready\n");
      ::kill(writer, SIGKILL);
      return 1;
    }
    std::this_thread::sleep_for(1ms);
  }
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 1;
  std::vector<pid_t> followers;
  for (int f = 0; f < o.followers; ++f) {
    const pid_t pid = ::fork();
    if (pid == 0) run_follower(o, pipefd[1], 9000 + static_cast<std::uint64_t>(f));
    followers.push_back(pid);
  }
  ::close(pipefd[1]);
  // The writer's life: killed with -9 and restarted every K ms, if asked, then closed.
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.seconds);
  std::uint64_t kills = 0;
  while (o.kill_every_ms > 0 &&
         std::chrono::steady_clock::now() + std::chrono::milliseconds(o.kill_every_ms) < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.kill_every_ms));
    ::kill(writer, SIGKILL);
    ::waitpid(writer, nullptr, 0);
    ++kills;
    writer = start_writer(o, 777 + kills);
  }
  std::this_thread::sleep_until(until);
  ::kill(writer, SIGTERM);
  int wst = 0;
  ::waitpid(writer, &wst, 0);
  const bool writer_ok = WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
  Tally sum;
  bool followers_ok = true;
  for (pid_t pid : followers) {
    Tally t;
    if (::read(pipefd[0], &t, sizeof t) != static_cast<ssize_t>(sizeof t)) followers_ok = false;
    sum.records += t.records;
    sum.probed += t.probed;
    sum.foreign += t.foreign;
    sum.version_order += t.version_order;
    sum.invisible += t.invisible;
    sum.torn_values += t.torn_values;
    sum.laps += t.laps;
    sum.restarts += t.restarts;
    sum.resyncs += t.resyncs;
    sum.mismatches += t.mismatches;
    sum.compared += t.compared;
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) followers_ok = false;
  }
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  ::unlink(("/dev/shm/" + o.segment + ".readers").c_str());
  ::unlink(("/dev/shm/" + o.segment + ".lock").c_str());
  std::printf(
      "change_torture: %llu records followed by %d followers, %llu probed at the overwrite edge; "
      "writer killed %llu times; laps "
      "%llu, restarts seen %llu, resyncs %llu; foreign records %llu, versions out of order %llu, "
      "changes invisible to get() %llu, torn values %llu; at the end %llu positions compared, "
      "%llu differences\n",
      static_cast<unsigned long long>(sum.records), o.followers,
      static_cast<unsigned long long>(sum.probed), static_cast<unsigned long long>(kills),
      static_cast<unsigned long long>(sum.laps), static_cast<unsigned long long>(sum.restarts),
      static_cast<unsigned long long>(sum.resyncs), static_cast<unsigned long long>(sum.foreign),
      static_cast<unsigned long long>(sum.version_order),
      static_cast<unsigned long long>(sum.invisible),
      static_cast<unsigned long long>(sum.torn_values),
      static_cast<unsigned long long>(sum.compared),
      static_cast<unsigned long long>(sum.mismatches));
  const bool ok = followers_ok && writer_ok && sum.foreign == 0 && sum.version_order == 0 &&
                  sum.invisible == 0 && sum.torn_values == 0 && sum.mismatches == 0 &&
                  sum.laps >= o.min_laps && sum.records >= o.min_records &&
                  (kills == 0 || sum.restarts > 0);
  if (!ok) {
    std::fprintf(
        stderr,
        "change_torture: FAILED (followers %s, writer %s, min laps %llu, min records %llu)\n",
        followers_ok ? "ok" : "failed", writer_ok ? "ok" : "failed",
        static_cast<unsigned long long>(o.min_laps),
        static_cast<unsigned long long>(o.min_records));
  }
  return ok ? 0 : 1;
}
