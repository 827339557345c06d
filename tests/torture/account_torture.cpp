// Multi-process torture of Reader::snapshot (shm/accounts.hpp): one writer process moves
// quantity between the positions of "ledger" accounts in Writer::apply batches, while reader
// processes take snapshots of those accounts and check that nothing is seen half applied.
//
// Each ledger account holds kTotal units spread over up to kInstruments positions in two
// namespaces ("book" and "cash": a snapshot spans namespaces). Every batch keeps the total:
//   transfer   two upserts: qty - d on one position, qty + d on another
//   fold       erase one position, add its qty to another (the list shrinks)
//   split      insert an absent position with d, take d from another (the list grows)
// so a snapshot whose qty do not sum to kTotal saw a batch half applied, and a snapshot with no
// position is a false miss (a ledger account always has one). Each position also carries
// check = qty * 7 + tag(key): a torn or foreign copy fails it.
// Meanwhile "churn" accounts are inserted and erased at random: their account entries come and
// go (erases shift other entries back: the epoch), and their slots are reused by the ledger's
// splits. The readers also snapshot churn accounts (every position must be theirs and whole).
//
// With --via-ring the same batches come from ANOTHER process: a producer (poscache::Producer)
// sends each as a batch through its shared-memory ring (begin_batch / end_batch), and the writer
// process serves rings and applies them as poscache-writer does (RingSource, CommandExecutor):
// a batch from a producer is seen whole by snapshot() exactly as an in-process apply is.
//
//   account_torture [--seconds S] [--readers R] [--capacity C] [--min-snapshots N] [--via-ring]
// Exit 0 only with zero broken totals, zero torn positions, zero false misses, zero writer_dead
// answers (the writer lives throughout), at least N verified ledger snapshots, the writer
// exiting 0 on SIGTERM, and a consistent segment at the end (verify, account index included).
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

#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "tests/torture/torture_flags.hpp"
#include "tools/verify.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/ring_source.hpp"
#include "writer/ingest/socket_source.hpp"

using namespace poscache;

namespace {

constexpr int kLedgers = 48;
constexpr int kInstruments = 8;  // per ledger account: i0-i3 in "book", i4-i7 in "cash"
constexpr int kTotal = 8000;
constexpr int kChurnAccounts = 300;

struct Options {
  double seconds = 5;
  int readers = 2;
  std::uint64_t capacity = 4096;
  std::uint64_t min_snapshots = 1000;
  std::string segment;
  bool via_ring = false;
};

std::string ledger(int i) {
  return "L" + std::to_string(i);
}
std::string instrument(int j) {
  return "i" + std::to_string(j);
}
NamespaceId ns_of(int j) {
  return j < kInstruments / 2 ? 0 : 1;
}

int128 tag(std::string_view account, std::string_view instr) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : account) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  h = (h ^ ':') * 1099511628211ull;
  for (char c : instr) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return static_cast<int128>(h >> 24);
}

WriterConfig config(const Options& o) {
  NamespaceSpec book{
      "book", {{"qty", FieldType::decimal, 0}, {"check", FieldType::decimal, 0}}, {}, {}};
  NamespaceSpec cash = book;
  cash.name = "cash";
  WriterConfig c;
  c.segment = o.segment;
  c.capacity = o.capacity;
  c.namespaces = {book, cash};
  c.heartbeat_interval = std::chrono::milliseconds(5);
  return c;
}

Update position(const Writer& w, NamespaceId ns, const std::string& a, const std::string& i,
                int128 qty) {
  const int128 v[2] = {qty, qty * 7 + tag(a, i)};
  return *w.make_update(ns, a, i, 0b11, v, 0, UpdateMode::replace);
}

// Where the batches go: a Writer in this process, or a producer ring to the writer process.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void begin() = 0;
  virtual void put(NamespaceId ns, const std::string& a, const std::string& i, int128 qty) = 0;
  virtual void erase(NamespaceId ns, const std::string& a, const std::string& i) = 0;
  virtual void end() = 0;  // the batch, whole
  virtual void invalidate_account(const std::string& a) = 0;
  virtual void tick() {}
};

class WriterSink final : public Sink {
 public:
  explicit WriterSink(Writer& w) : w_(w) {}
  void begin() override { ops_.clear(); }
  void put(NamespaceId ns, const std::string& a, const std::string& i, int128 qty) override {
    ops_.emplace_back(position(w_, ns, a, i, qty));
  }
  void erase(NamespaceId ns, const std::string& a, const std::string& i) override {
    ops_.emplace_back(Erase{KeyRef{ns, a, i}});
  }
  void end() override {
    if (!ops_.empty() && !w_.apply(ops_).applied) std::_Exit(4);
  }
  void invalidate_account(const std::string& a) override { w_.invalidate_account(a); }
  void tick() override { w_.tick(); }

 private:
  Writer& w_;
  std::vector<Op> ops_;
};

class RingSink final : public Sink {
 public:
  explicit RingSink(const std::string& segment) {
    ProducerConfig c;
    c.segment = segment;
    c.name = "torture";
    c.capacity = 4096;
    c.connect_timeout = std::chrono::seconds(30);
    for (int tries = 0; !p_; ++tries) {  // the writer process may not have created it yet
      try {
        p_ = Producer::open(c);
      } catch (const Error&) {
        if (tries > 3000) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
  void begin() override {
    p_->begin_batch();
    staged_ = 0;
  }
  void put(NamespaceId ns, const std::string& a, const std::string& i, int128 qty) override {
    ++staged_;
    const std::string q = std::to_string(static_cast<long long>(qty));
    const std::string check = std::to_string(static_cast<long long>(qty * 7 + tag(a, i)));
    auto u = p_->make_update(ns == 0 ? "book" : "cash", a, i, {{"qty", q}, {"check", check}}, 0,
                             UpdateMode::replace);
    if (!u || p_->push(*u).status != PushStatus::ok) std::_Exit(5);
  }
  void erase(NamespaceId ns, const std::string& a, const std::string& i) override {
    ++staged_;
    if (p_->erase(ns == 0 ? "book" : "cash", a, i).status != PushStatus::ok) std::_Exit(5);
  }
  void end() override {
    if (staged_ == 0) {  // the step had nothing to move
      p_->abort_batch();
      return;
    }
    const PushResult r = p_->end_batch(std::chrono::seconds(10));
    if (r.status != PushStatus::ok) {
      std::fprintf(stderr, "account_torture: batch refused: %s\n", p_->error().c_str());
      std::_Exit(6);
    }
    last_ = r.seq;
  }
  void invalidate_account(const std::string& a) override {
    if (p_->invalidate_account(a, {}, std::chrono::seconds(10)).status != PushStatus::ok)
      std::_Exit(5);
  }
  void tick() override {
    // Every batch applied (none refused): a refused one would break the model.
    if (last_ != 0 && p_->wait_applied(last_, std::chrono::seconds(10)) != WaitStatus::done)
      std::_Exit(7);
    if (p_->stats().rejected != 0) {
      std::fprintf(stderr, "account_torture: the writer refused: %s\n",
                   p_->stats().last_error.c_str());
      std::_Exit(8);
    }
  }

 private:
  std::unique_ptr<Producer> p_;
  std::uint64_t last_ = 0;
  int staged_ = 0;
};

volatile sig_atomic_t g_stop = 0;

// The model and its batches: the ledgers' totals never change, churn comes and goes.
void feed(Sink& sink, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  // The model of each ledger: instrument -> qty (absent: no position).
  std::vector<std::map<int, int128>> model(kLedgers);
  for (int a = 0; a < kLedgers; ++a) {
    sink.begin();
    for (int j = 0; j < kInstruments; ++j) {
      model[a][j] = kTotal / kInstruments;
      sink.put(ns_of(j), ledger(a), instrument(j), model[a][j]);
    }
    sink.end();
  }
  std::vector<std::pair<std::string, std::string>> churn_live;
  while (!g_stop) {
    for (int step = 0; step < 64; ++step) {
      const int a = static_cast<int>(rng() % kLedgers);
      auto& m = model[a];
      const std::uint64_t kind = rng() % 10;
      auto pick_present = [&] {
        auto it = m.begin();
        std::advance(it, static_cast<long>(rng() % m.size()));
        return it->first;
      };
      sink.begin();
      if (kind < 6 && m.size() >= 2) {  // transfer
        const int x = pick_present();
        int y = pick_present();
        while (y == x) y = pick_present();
        const int128 d = static_cast<int128>(rng() % 200) - 100;
        m[x] -= d;
        m[y] += d;
        sink.put(ns_of(x), ledger(a), instrument(x), m[x]);
        sink.put(ns_of(y), ledger(a), instrument(y), m[y]);
      } else if (kind < 8 && m.size() >= 2) {  // fold x into y
        const int x = pick_present();
        int y = pick_present();
        while (y == x) y = pick_present();
        m[y] += m[x];
        m.erase(x);
        sink.erase(ns_of(x), ledger(a), instrument(x));
        sink.put(ns_of(y), ledger(a), instrument(y), m[y]);
      } else if (m.size() < static_cast<std::size_t>(kInstruments)) {  // split into an absent x
        int x = static_cast<int>(rng() % kInstruments);
        while (m.count(x)) x = static_cast<int>(rng() % kInstruments);
        const int y = pick_present();
        const int128 d = static_cast<int128>(rng() % 100);
        m[x] = d;
        m[y] -= d;
        sink.put(ns_of(x), ledger(a), instrument(x), m[x]);
        sink.put(ns_of(y), ledger(a), instrument(y), m[y]);
      }
      sink.end();
      // Churn: whole accounts appear and vanish (their entries come and go).
      const std::uint64_t r = rng();
      if (churn_live.size() < 600 && r % 3 != 0) {
        std::string ca = "c" + std::to_string(r % kChurnAccounts);
        std::string ci = "j" + std::to_string((r >> 20) % 4);
        sink.begin();
        sink.put(static_cast<NamespaceId>(r & 1), ca, ci, static_cast<int128>(r >> 40));
        sink.end();
        churn_live.emplace_back(std::move(ca), std::move(ci));
      } else if (!churn_live.empty()) {
        const std::size_t k = r % churn_live.size();
        if ((r >> 32) % 8 == 0) {
          sink.invalidate_account(churn_live[k].first);
        } else {
          sink.begin();
          sink.erase(0, churn_live[k].first, churn_live[k].second);
          sink.erase(1, churn_live[k].first, churn_live[k].second);
          sink.end();
        }
        churn_live[k] = churn_live.back();
        churn_live.pop_back();
      }
    }
    sink.tick();
  }
}

void on_sigterm() {
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, nullptr);
}

[[noreturn]] void run_writer(const Options& o, std::uint64_t seed) {
  on_sigterm();
  auto w = Writer::open(config(o));
  if (!o.via_ring) {
    WriterSink sink(*w);
    feed(sink, seed);
    w->close();
    std::_Exit(0);
  }
  // As poscache-writer serves producers: the socket takes rings, the loop drains them.
  ingest::CommandExecutor exec(*w, nullptr);
  ingest::SocketSource socket(
      ingest::SocketConfig{ingest::default_socket_path(o.segment), 0600, "", 8}, w->namespaces(),
      {});
  ingest::RingSource rings(*w, {});
  socket.set_rings(&rings);
  while (!g_stop) {
    std::size_t n = rings.poll(exec, 0, 256);
    n += socket.poll(exec, 0, 256);
    w->tick();
    if (n == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  w->close();
  std::_Exit(0);
}

[[noreturn]] void run_producer(const Options& o, std::uint64_t seed) {
  on_sigterm();
  try {
    RingSink sink(o.segment);
    feed(sink, seed);
    sink.tick();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "account_torture: producer: %s\n", e.what());
    std::_Exit(9);
  }
  std::_Exit(0);
}

struct Tally {
  std::uint64_t ledger_ok = 0, broken_totals = 0, torn = 0, false_misses = 0, busy = 0, dead = 0,
                churn_ok = 0, positions = 0;
};

[[noreturn]] void run_reader(const Options& o, int out_fd, std::uint64_t seed) {
  Tally t;
  Reader r = Reader::open(o.segment);
  std::mt19937_64 rng(seed);
  std::vector<Position> out;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.seconds);
  while (std::chrono::steady_clock::now() < until) {
    for (int k = 0; k < 256; ++k) {
      const bool is_ledger = rng() % 4 != 0;
      const std::string a = is_ledger ? ledger(static_cast<int>(rng() % kLedgers))
                                      : "c" + std::to_string(rng() % kChurnAccounts);
      const ReadStatus st = r.snapshot(a, out);
      if (st == ReadStatus::writer_busy) {
        ++t.busy;
        continue;
      }
      if (st == ReadStatus::writer_dead) {
        ++t.dead;
        continue;
      }
      if (st == ReadStatus::not_found) {
        if (is_ledger) ++t.false_misses;
        continue;
      }
      if (!has_value(st)) {
        ++t.torn;  // bad_key / retired cannot happen here
        continue;
      }
      int128 total = 0;
      bool whole = true;
      for (const Position& p : out) {
        ++t.positions;
        if (p.account_view() != a || p.values[1] != p.values[0] * 7 + tag(a, p.instrument_view()))
          whole = false;
        total += p.values[0];
      }
      if (!whole) ++t.torn;
      if (is_ledger) {
        if (total != kTotal || out.size() > static_cast<std::size_t>(kInstruments))
          ++t.broken_totals;
        else if (whole)
          ++t.ledger_ok;
      } else if (whole) {
        ++t.churn_ok;
      }
    }
  }
  if (::write(out_fd, &t, sizeof t) != static_cast<ssize_t>(sizeof t)) std::_Exit(3);
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.segment = "poscache_account_torture_" + std::to_string(::getpid());
  test::TortureFlags flags("account_torture",
                           "usage: account_torture [--seconds S] [--readers R] [--capacity C] "
                           "[--min-snapshots N] [--via-ring]");
  flags.value("--seconds", o.seconds)
      .value("--readers", o.readers)
      .value("--capacity", o.capacity)
      .value("--min-snapshots", o.min_snapshots)
      .toggle("--via-ring", o.via_ring);
  flags.parse(argc, argv);
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &old);
  const pid_t writer = ::fork();
  if (writer == 0) run_writer(o, 777);
  pid_t producer = -1;
  if (o.via_ring) {
    producer = ::fork();
    if (producer == 0) run_producer(o, 777);
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  for (int tries = 0;; ++tries) {
    try {
      Reader probe = Reader::open(o.segment);
      if (probe.stats().live >= kLedgers * kInstruments) break;
    } catch (const Error&) {
    }
    if (tries > 5000) {
      std::fprintf(stderr, "account_torture: the writer never made the segment ready\n");
      ::kill(writer, SIGKILL);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 1;
  std::vector<pid_t> readers;
  for (int r = 0; r < o.readers; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) run_reader(o, pipefd[1], 9000 + static_cast<std::uint64_t>(r));
    readers.push_back(pid);
  }
  ::close(pipefd[1]);
  Tally sum;
  bool readers_ok = true;
  for (pid_t pid : readers) {
    Tally t;
    if (::read(pipefd[0], &t, sizeof t) != static_cast<ssize_t>(sizeof t)) readers_ok = false;
    sum.ledger_ok += t.ledger_ok;
    sum.broken_totals += t.broken_totals;
    sum.torn += t.torn;
    sum.false_misses += t.false_misses;
    sum.busy += t.busy;
    sum.dead += t.dead;
    sum.churn_ok += t.churn_ok;
    sum.positions += t.positions;
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) readers_ok = false;
  }
  bool producer_ok = true;
  if (producer > 0) {  // first: its last batches applied, then the writer stops
    ::kill(producer, SIGTERM);
    int pst = 0;
    ::waitpid(producer, &pst, 0);
    producer_ok = WIFEXITED(pst) && WEXITSTATUS(pst) == 0;
    if (!producer_ok)
      std::fprintf(stderr, "account_torture: the producer failed (status %d)\n", pst);
  }
  ::kill(writer, SIGTERM);
  int wst = 0;
  ::waitpid(writer, &wst, 0);
  const bool writer_ok = WIFEXITED(wst) && WEXITSTATUS(wst) == 0 && producer_ok;
  // The segment the writer left: slots, index and account index agree (tools/verify.hpp).
  std::vector<std::string> problems;
  try {
    problems = tools::verify(Reader::open(o.segment)).problems;
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  for (const auto& p : problems) std::fprintf(stderr, "account_torture: verify: %s\n", p.c_str());
  boost::interprocess::shared_memory_object::remove(o.segment.c_str());
  ::unlink(("/dev/shm/" + o.segment + ".readers").c_str());
  ::unlink(("/dev/shm/" + o.segment + ".lock").c_str());
  ::unlink(("/dev/shm/" + o.segment + ".sock").c_str());
  std::printf(
      "account_torture%s: %llu ledger snapshots verified (%llu positions in all), %llu churn "
      "snapshots; broken totals %llu, torn %llu, false misses %llu, writer_busy %llu, "
      "writer_dead %llu\n",
      o.via_ring ? " (batches from a producer process through a ring)" : "",
      static_cast<unsigned long long>(sum.ledger_ok),
      static_cast<unsigned long long>(sum.positions), static_cast<unsigned long long>(sum.churn_ok),
      static_cast<unsigned long long>(sum.broken_totals), static_cast<unsigned long long>(sum.torn),
      static_cast<unsigned long long>(sum.false_misses), static_cast<unsigned long long>(sum.busy),
      static_cast<unsigned long long>(sum.dead));
  const bool ok = readers_ok && writer_ok && problems.empty() && sum.broken_totals == 0 &&
                  sum.torn == 0 && sum.false_misses == 0 && sum.dead == 0 &&
                  sum.ledger_ok >= o.min_snapshots;
  if (!ok) {
    std::fprintf(stderr, "account_torture: FAILED (readers %s, writer %s, min snapshots %llu)\n",
                 readers_ok ? "ok" : "failed", writer_ok ? "ok" : "failed",
                 static_cast<unsigned long long>(o.min_snapshots));
  }
  return ok ? 0 : 1;
}
