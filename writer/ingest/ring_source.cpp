#include "writer/ingest/ring_source.hpp"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstring>

#include "shm/clock.hpp"
#include "shm/seqlock.hpp"
#include "writer/ingest/ring_codec.hpp"

namespace poscache::ingest {
namespace {

constexpr std::size_t kBatch = 256;  // messages copied and applied per ring per poll at most

// The ring's last error, for the producer itself (seqlock over the text words).
void put_ring_error(shm::RingHeader* h, std::string_view text) {
  const std::uint64_t s = shm::seqlock_begin(&h->error_seq);
  const std::size_t n = std::min(text.size(), sizeof h->error);
  shm::put_text(h->error, text.substr(0, n));  // words, read back with relaxed loads
  shm::store_relaxed(&h->error_len, static_cast<std::uint64_t>(n));
  shm::seqlock_publish(&h->error_seq, s);
}

// PC3's answer for message `seq` (shm/ring.hpp, OUTCOMES): a refusal's reason first, over the
// values and text its slot no longer needs, then the outcome word; both before PC4's release of
// head.
void put_outcome(RingSource::RingView r, std::uint64_t seq, shm::RingOutcome outcome,
                 std::string_view why = {}) {
  if (outcome == shm::RingOutcome::rejected) {
    char* reason = shm::refusal_text(r.msgs[(seq - 1) & (r.capacity - 1)]);
    const std::size_t n = std::min(why.size(), shm::kRingRefusalLen);
    if (n != 0) std::memcpy(reason, why.data(), n);
    std::memset(reason + n, 0, shm::kRingRefusalLen - n);
  }
  shm::store_relaxed(&r.outcomes[(seq - 1) & (r.capacity - 1)], shm::outcome_word(seq, outcome));
}

shm::RingOutcome outcome_of(CommandStatus s) {
  switch (s) {
    case CommandStatus::applied:
      return shm::RingOutcome::applied;
    case CommandStatus::duplicate:
      return shm::RingOutcome::duplicate;
    case CommandStatus::stale_source:
      return shm::RingOutcome::stale;
    case CommandStatus::not_found:
      return shm::RingOutcome::not_found;
    case CommandStatus::rejected:
      break;
  }
  return shm::RingOutcome::rejected;
}

}  // namespace

RingSource::RingSource(Writer& writer, LogSink log)
    : writer_(writer),
      log_(std::move(log)),
      slots_(slot_masks(writer.namespaces())),
      copies_(kBatch),
      updates_(kBatch),
      hashes_(kBatch),
      results_(kBatch) {}

RingSource::~RingSource() {
  while (!rings_.empty()) release(rings_.begin()->first, "the writer stopped");
}

std::string RingSource::attach(int fd, std::uint64_t conn, pid_t pid, uid_t uid) {
  if (rings_.count(conn) != 0) return "this connection already attached a ring";
  if (rings_.size() >= kMaxRings)
    return "the writer serves " + std::to_string(kMaxRings) + " producer rings already";
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(shm::kRingHeaderSize))
    return "the descriptor is not a ring (size " + std::to_string(st.st_size) + " bytes)";
  // The same ring again (its producer lost the connection and re-attached while this writer
  // still drains it): one consumer only. A ring still attached elsewhere is refused; one whose
  // connection hung up moves to the new connection with the head this writer keeps.
  for (auto it = rings_.begin(); it != rings_.end(); ++it) {
    if (it->second.dev != st.st_dev || it->second.ino != st.st_ino) continue;
    if (!it->second.gone) return "this ring is attached through another connection already";
    Ring moved = std::move(it->second);
    rings_.erase(it);
    moved.gone = false;
    moved.pid = pid;
    if (log_)
      log_(LogLevel::info, "producer '" + moved.name + "' (pid " + std::to_string(pid) +
                               ") re-attached its ring at message " + std::to_string(moved.head));
    rings_.emplace(conn, std::move(moved));
    (void)uid;
    return {};
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return std::string("cannot map the ring: ") + std::strerror(errno);
  auto* h = static_cast<shm::RingHeader*>(p);
  // Identity words are read once, here, into private copies; nothing later trusts them again.
  const std::uint64_t magic = shm::load_relaxed(&h->magic);
  const std::uint32_t version = shm::load_relaxed(&h->version);
  const std::uint32_t msg_size = shm::load_relaxed(&h->message_size);
  const std::uint64_t capacity = shm::load_relaxed(&h->capacity);
  std::string why;
  if (magic != shm::kRingMagic) {
    why = "not a poscache ring (bad magic)";
  } else if (version != shm::kRingVersion || msg_size != sizeof(shm::RingMessage)) {
    why = "ring format mismatch: expected version " + std::to_string(shm::kRingVersion) + " with " +
          std::to_string(sizeof(shm::RingMessage)) + "-byte messages, found version " +
          std::to_string(version) + " with " + std::to_string(msg_size);
  } else if (shm::load_acquire(&h->dropped) != 0) {
    why = "this ring was dropped as damaged by a writer; the producer must open a new one";
  } else if (capacity < 2 || capacity > (1u << 20) || (capacity & (capacity - 1)) != 0 ||
             shm::ring_bytes(capacity) != size) {
    why = "ring capacity " + std::to_string(capacity) +
          " is not a power of two from 2 to 1048576 matching the descriptor's size";
  }
  if (!why.empty()) {
    ::munmap(p, size);
    return why;
  }
  char name_buf[sizeof h->name + 1] = {};
  std::memcpy(name_buf, h->name, sizeof h->name);
  Ring r;
  r.h = h;
  r.msgs = shm::ring_messages(h);
  r.outcomes = shm::ring_outcomes(h, capacity);
  r.bytes = size;
  r.capacity = capacity;
  r.head = shm::load_acquire(&h->head);  // a re-attached ring continues where it was applied
  r.synced = r.head;  // what a previous writer applied is at least as synced as it will get
  r.name = name_buf;
  r.pid = pid;
  r.dev = st.st_dev;
  r.ino = st.st_ino;
  const std::uint64_t tail = shm::load_acquire(&h->tail);
  if (tail < r.head || tail - r.head > capacity) {
    ::munmap(p, size);
    return "ring indices out of range (head " + std::to_string(r.head) + ", tail " +
           std::to_string(tail) + ")";
  }
  r.table_id = writer_.producer_attach(r.name, pid, uid);
  shm::store_relaxed(&h->redis, writer_.mirrors_to_redis() ? 1u : 0u);
  shm::store_release(&h->synced, writer_.mirrors_to_redis() ? r.synced : 0);
  shm::store_release(&h->attached, 1u);
  if (log_)
    log_(LogLevel::info,
         "producer '" + r.name + "' (pid " + std::to_string(pid) + ", uid " + std::to_string(uid) +
             ") attached a ring of " + std::to_string(capacity) + " messages" +
             (tail > r.head ? ", " + std::to_string(tail - r.head) + " waiting" : std::string()));
  rings_.emplace(conn, std::move(r));
  return {};
}

void RingSource::hang_up(std::uint64_t conn) {
  auto it = rings_.find(conn);
  if (it != rings_.end()) it->second.gone = true;
}

void RingSource::release(std::uint64_t conn, const char* why) {
  auto it = rings_.find(conn);
  if (it == rings_.end()) return;
  Ring& r = it->second;
  shm::store_release(&r.h->attached, 0u);
  if (log_)
    log_(LogLevel::info, "producer '" + r.name + "' (pid " + std::to_string(r.pid) +
                             ") released: " + why + "; " + std::to_string(r.head) + " applied");
  writer_.producer_detach(r.table_id);
  ::munmap(r.h, r.bytes);
  rings_.erase(it);
}

// A message the writer's table or executor already refused and counted: the ring's own count and
// last error, for the producer and for poscache-inspect producers.
void RingSource::note_refusal(Ring& r, std::uint64_t seq, const std::string& why) {
  ++r.rejected;
  shm::store_relaxed(&r.h->rejected, r.rejected);
  const std::string text = "message " + std::to_string(seq) + ": " + why;
  put_outcome(view(r), seq, shm::RingOutcome::rejected, why);
  put_ring_error(r.h, text);
  writer_.producer_error(r.table_id, text);
  log_refusal(r, text);
}

// Refusals are logged, at most kLoggedPerWindow per ring per window; the rest are counted and
// summed up in one line when the window closes (a producer sending garbage in a loop cannot
// flood the log, and the first of each burst is always seen).
void RingSource::log_refusal(Ring& r, const std::string& text) {
  if (!log_) return;
  const std::int64_t now = shm::monotonic_ns();
  flush_refusal_log(r, now);
  if (r.logged_in_window < kLoggedPerWindow) {
    ++r.logged_in_window;
    log_(LogLevel::warn,
         "producer '" + r.name + "' (pid " + std::to_string(r.pid) + "): refused " + text);
  } else {
    ++r.unlogged;
    r.last_unlogged = text;
  }
}

void RingSource::flush_refusal_log(Ring& r, std::int64_t now) {
  if (now - r.log_window_start < kLogWindowNs) return;
  if (r.unlogged != 0 && log_)
    log_(LogLevel::warn, "producer '" + r.name + "' (pid " + std::to_string(r.pid) +
                             "): " + std::to_string(r.unlogged) + " more messages refused in " +
                             std::to_string(kLogWindowNs / 1'000'000'000) +
                             " s, not logged one by one; the last: " + r.last_unlogged);
  r.log_window_start = now;
  r.logged_in_window = 0;
  r.unlogged = 0;
}

// A message refused here, before it reached the writer: counted everywhere.
void RingSource::refuse(Ring& r, std::uint64_t seq, const std::string& why) {
  ++counters_.rejected;
  writer_.count_reject();
  note_refusal(r, seq, why);
}

// A batch (shm/ring.hpp, BATCHES): the header at `seq`, its `count` commands in copies_[first..].
// Decoded whole, applied whole by the executor (one Writer::apply), each outcome stored.
void RingSource::apply_group(Ring& r, CommandExecutor& exec, std::uint64_t seq, std::size_t first,
                             std::size_t commands) {
  const std::size_t count = commands;
  Group g;
  g.commands.reserve(count);
  std::string why;
  for (std::size_t k = 0; k < count && why.empty(); ++k) {
    Command cmd;
    std::uint64_t hash = 0;
    Update u;
    std::string err;
    const RingDecoded what = decode_ring_message(copies_[first + k], writer_.namespaces().size(), u,
                                                 hash, cmd, err, &slots_);
    counters_.received += 1;
    if (what == RingDecoded::bad)
      why = "batch: command " + std::to_string(k) + ": " + err;
    else if (what == RingDecoded::upsert)
      g.commands.emplace_back(u);
    else
      g.commands.push_back(std::move(cmd));
  }
  CommandResult res;
  if (why.empty()) {
    res = exec.execute(g);
  } else {
    ++counters_.rejected;
    writer_.count_reject();
    res.error = why + "; nothing of the batch was applied";
  }
  ingest::count(counters_, res);
  if (res.status == CommandStatus::rejected) {
    note_refusal(r, seq, res.error);
    for (std::size_t k = 0; k < count; ++k)
      put_outcome(view(r), seq + 1 + k, shm::RingOutcome::rejected,
                  "the batch (message " + std::to_string(seq) + ") was refused: " + res.error);
    return;
  }
  put_outcome(view(r), seq, shm::RingOutcome::applied);
  for (std::size_t k = 0; k < count && k < res.results.size(); ++k)
    put_outcome(view(r), seq + 1 + k, outcome_of(res.results[k].status));
}

// A ring whose indices are out of range (PC1): the producer wrote what a producer cannot. It is
// read no further. The producer learns why and how far it was applied (shm/ring.hpp, A DROPPED
// RING): the reason, the true head, then `dropped`.
void RingSource::drop(Ring& r) {
  const std::uint64_t tail = shm::load_acquire(&r.h->tail);
  const std::string why = "ring dropped as damaged: its tail " + std::to_string(tail) +
                          " is outside [head " + std::to_string(r.head) + ", head + capacity " +
                          std::to_string(r.capacity) + "]; messages after " +
                          std::to_string(r.head) + " were not applied";
  if (log_)
    log_(LogLevel::error, "producer '" + r.name + "' (pid " + std::to_string(r.pid) + "): " + why);
  put_ring_error(r.h, why);
  writer_.producer_error(r.table_id, why);
  shm::store_release(&r.h->head, r.head);
  shm::store_release(&r.h->dropped, 1u);
}

void RingSource::publish_synced(Ring& r) {
  while (!r.unsynced.empty() && writer_.redis_acknowledged(r.unsynced.front().second)) {
    r.synced = r.unsynced.front().first;
    r.unsynced.pop_front();
  }
}

std::size_t RingSource::drain(Ring& r, CommandExecutor& exec, std::size_t budget) {
  // PC1
  const std::uint64_t tail = shm::load_acquire(&r.h->tail);
  if (tail < r.head || tail - r.head > r.capacity) return SIZE_MAX;  // corrupt: caller releases
  std::size_t n = std::min<std::uint64_t>({tail - r.head, budget, kBatch});
  // PC2: copies first, validated after (a producer writing during the copy changes nothing).
  for (std::size_t i = 0; i < n; ++i)
    copy_message(copies_[i], r.msgs[(r.head + i) & (r.capacity - 1)], &slots_);
  // PC3: in order; runs of upserts as one batch.
  const auto& specs = writer_.namespaces();
  std::size_t run = 0;
  std::uint64_t run_start = 0;
  auto flush_run = [&] {
    if (run == 0) return;
    writer_.upsert_batch(std::span(updates_.data(), run), std::span(hashes_.data(), run),
                         std::span(results_.data(), run));
    for (std::size_t k = 0; k < run; ++k) {
      const ApplyResult& res = results_[k];
      if (res.status == ApplyStatus::bad_input) {
        const Update& u = updates_[k];
        auto why = writer_.make_update(u.ns, u.account_view(), u.instrument_view(), u.fields_mask,
                                       u.values, u.source_seq, u.mode);
        ++counters_.rejected;  // the writer counted it in the segment already
        note_refusal(r, run_start + k,
                     why ? "upsert: the key hash does not match the key" : why.error());
      } else if (res.status == ApplyStatus::stale_source) {
        ++counters_.ignored;
        ++counters_.stale;
        put_outcome(view(r), run_start + k, shm::RingOutcome::stale);
      } else {
        ++counters_.applied;
        put_outcome(view(r), run_start + k, shm::RingOutcome::applied);
      }
    }
    run = 0;
  };
  std::size_t n_applied = n;  // a batch beyond this copy ends the drain before its header
  for (std::size_t i = 0; i < n; ++i) {
    const shm::RingMessage& m = copies_[i];
    const std::uint64_t seq = r.head + i + 1;
    if (m.kind == static_cast<std::uint8_t>(shm::RingKind::group)) {
      flush_run();
      const std::uint64_t count = m.values[0];
      const std::uint64_t published = tail - (r.head + i + 1);  // messages after the header
      if (i + count >= n && i > 0 && count <= published && count <= kMaxGroupCommands) {
        n_applied = i;  // its commands lie beyond this copy: the next drain starts with it
        break;
      }
      ++counters_.received;
      if (count == 0 || count > kMaxGroupCommands) {
        refuse(r, seq,
               "batch: a header of " + std::to_string(count) + " commands; a batch has 1 to " +
                   std::to_string(kMaxGroupCommands));
        continue;
      }
      if (count > published) {
        refuse(r, seq,
               "batch: a header of " + std::to_string(count) + " commands, " +
                   std::to_string(published) +
                   " published after it (a producer "
                   "publishes a batch whole)");
        continue;
      }
      if (i + count >= n) {  // first in the drain, its commands beyond the copy: widen it
        for (std::size_t k = n; k <= count; ++k)
          copy_message(copies_[k], r.msgs[(r.head + k) & (r.capacity - 1)], &slots_);
        n = n_applied = count + 1;
      }
      apply_group(r, exec, seq, i + 1, static_cast<std::size_t>(count));
      i += count;
      continue;
    }
    ++counters_.received;
    Command cmd;
    std::string why;
    const RingDecoded what =
        decode_ring_message(m, specs.size(), updates_[run], hashes_[run], cmd, why, &slots_);
    if (what == RingDecoded::upsert) {
      if (run == 0) run_start = seq;
      ++run;
      continue;
    }
    flush_run();
    if (what == RingDecoded::bad) {
      refuse(r, seq, why);
      continue;
    }
    const CommandResult res = exec.execute(cmd);
    count(counters_, res);
    if (res.status == CommandStatus::rejected)
      note_refusal(r, seq, res.error);
    else
      put_outcome(view(r), seq, outcome_of(res.status));
  }
  flush_run();
  // PC4: everything up to head + n_applied is applied and visible.
  r.head += n_applied;
  shm::store_release(&r.h->head, r.head);
  return n_applied;
}

std::size_t RingSource::poll(CommandExecutor& exec, std::int64_t, std::size_t budget) {
  std::size_t handled = 0;
  std::vector<std::uint64_t> done, dropped;
  for (auto& [conn, r] : rings_) {
    const std::uint64_t head_before = r.head;
    const std::uint64_t synced_before = r.synced;
    std::size_t n = 0;
    if (handled < budget) {
      n = drain(r, exec, budget - handled);
      if (n == SIZE_MAX) {
        drop(r);
        dropped.push_back(conn);
        continue;
      }
      handled += n;
    }
    // PC5
    if (writer_.mirrors_to_redis()) {
      if (r.head > head_before) r.unsynced.emplace_back(r.head, writer_.redis_ticket());
      publish_synced(r);
      if (r.synced != synced_before) shm::store_release(&r.h->synced, r.synced);
    }
    // Wake a waiting producer. The fence pairs with the producer's (reader/producer/producer.cpp):
    // it stores `waiters` then fences then reads head; this stores head, fences, reads `waiters`.
    // At least one of the two sees the other's store, so no wake-up is lost.
    if (r.head != head_before || r.synced != synced_before) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (shm::load_relaxed(&r.h->waiters) != 0) {
        shm::store_release(&r.h->ack_futex, shm::load_relaxed(&r.h->ack_futex) + 1);
        ::syscall(SYS_futex, &r.h->ack_futex, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
      }
    }
    // The producer table only when a count moved: a busy-polling loop would otherwise store five
    // words into the segment on every turn.
    const ProducerCounts counts{shm::load_relaxed(&r.h->tail), r.head, r.rejected,
                                shm::load_relaxed(&r.h->full_count),
                                writer_.mirrors_to_redis() ? r.synced : 0};
    if (counts.pushed != r.published.pushed || counts.applied != r.published.applied ||
        counts.rejected != r.published.rejected || counts.full != r.published.full ||
        counts.synced != r.published.synced) {
      writer_.producer_counts(r.table_id, counts);
      r.published = counts;
    }
    if (r.unlogged != 0) flush_refusal_log(r, shm::monotonic_ns());
    if (r.gone && shm::load_acquire(&r.h->tail) == r.head) done.push_back(conn);
  }
  for (std::uint64_t conn : done) release(conn, "its producer hung up");
  for (std::uint64_t conn : dropped) release(conn, "dropped as damaged (see the error above)");
  return handled;
}

}  // namespace poscache::ingest
