// The writer: the only process that changes a segment. Slot writes follow the seqlock protocol
// (shm/seqlock.hpp), index changes the index protocol (shm/index.hpp); this file adds the
// writer-only bookkeeping (recency log, free list, account lists, undo record) and the
// creation / re-attachment of segments.
#include "poscache/writer.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <tuple>

#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/key_text.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/seqlock.hpp"
#include "shm/slot_codec.hpp"
#include "writer/account_heads.hpp"
#include "writer/fault_points.hpp"
#include "writer/recency_log.hpp"
#include "writer/redis_sync.hpp"
#include "writer/warm_start.hpp"
#include "writer/writer_lock.hpp"

namespace poscache {

using namespace shm;
namespace bip = boost::interprocess;

std::string_view to_string(ApplyStatus s) noexcept {
  switch (s) {
    case ApplyStatus::inserted:
      return "inserted";
    case ApplyStatus::updated:
      return "updated";
    case ApplyStatus::erased:
      return "erased";
    case ApplyStatus::not_found:
      return "not_found";
    case ApplyStatus::stale_source:
      return "stale_source";
    case ApplyStatus::bad_input:
      return "bad_input";
  }
  return "unknown";
}

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// Counters have one writer: a relaxed load and store is enough (no locked read-modify-write).
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(kRelaxed) + n, kRelaxed);
}

std::uint64_t account_hash(std::string_view account) noexcept {
  return XXH3_64bits(account.data(), account.size());
}

// Clock ticks since boot when the process started (/proc/<pid>/stat field 22): with the pid it
// identifies a process even after the pid is reused.
std::uint64_t process_start_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

void copy_name(char (&dst)[32], std::string_view src) {
  std::memset(dst, 0, sizeof dst);
  std::memcpy(dst, src.data(), std::min(src.size(), sizeof dst - 1));
}

std::string ns_list(const std::vector<NamespaceSpec>& specs) {
  std::string s;
  for (const auto& n : specs) s += (s.empty() ? "" : ", ") + n.name;
  return s.empty() ? "(none)" : s;
}

std::string describe(const NamespaceSpec& n) {
  std::string s = n.name + "{";
  for (std::size_t i = 0; i < n.fields.size(); ++i) {
    const auto& f = n.fields[i];
    s += (i ? "," : "") + f.name + ":" + std::string(to_string(f.type));
    if (f.type == FieldType::decimal) s += "(" + std::to_string(f.scale) + ")";
  }
  return s + ",stale_after=" + std::to_string(n.stale_after.count()) +
         "ns,expire_after=" + std::to_string(n.expire_after.count()) + "ns}";
}

bool same_schema(const NamespaceDesc& d, const NamespaceSpec& n) {
  if (fixed_name(d.name) != n.name) return false;
  if (d.field_count != n.fields.size() || d.stale_after_ns != n.stale_after.count() ||
      d.expire_after_ns != n.expire_after.count()) {
    return false;
  }
  for (std::size_t i = 0; i < n.fields.size(); ++i) {
    const FieldDesc& f = d.fields[i];
    if (fixed_name(f.name) != n.fields[i].name ||
        f.type != static_cast<std::uint8_t>(n.fields[i].type) || f.scale != n.fields[i].scale) {
      return false;
    }
  }
  return true;
}

NamespaceSpec spec_of(const NamespaceDesc& d) {
  NamespaceSpec n;
  n.name = std::string(fixed_name(d.name));
  for (std::uint32_t i = 0; i < std::min<std::uint32_t>(d.field_count, kMaxFields); ++i) {
    n.fields.push_back(FieldSpec{std::string(fixed_name(d.fields[i].name)),
                                 static_cast<FieldType>(d.fields[i].type), d.fields[i].scale});
  }
  n.stale_after = std::chrono::nanoseconds(d.stale_after_ns);
  n.expire_after = std::chrono::nanoseconds(d.expire_after_ns);
  return n;
}

void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

// =============================================================================================
struct Writer::Impl {
  WriterConfig cfg;
  detail::WriterLock lock;
  Mapping mapping;
  SegmentHeader* h = nullptr;
  Slot* slots = nullptr;
  Bucket* index[2] = {nullptr, nullptr};
  WriterArea* wa = nullptr;
  SlotBook* book = nullptr;
  std::uint64_t capacity = 0;
  std::uint64_t buckets = 0;
  std::uint64_t tombstone_limit = 0;
  detail::AccountHeads account_heads{1};  // account hash -> first slot; sized in bind()
  detail::RecencyLog recency;             // the LRU order (writer/recency_log.hpp); sized in bind()
  std::unique_ptr<detail::RedisSync> sync;  // null without Redis
  JournalHeader* journal = nullptr;         // removals not yet in Redis (shm/layout.hpp)
  JournalEntry* journal_entries = nullptr;
  std::uint64_t journal_size = 0;
  detail::WarmStartReport warm;

  std::int64_t last_now = 0;
  std::int64_t last_heartbeat = 0;
  std::int64_t last_wake = 0;
  bool wake_pending = false;
  bool in_batch = false;
  bool defer_rebuild = false;
  bool reattached = false;
  std::uint64_t huge_page_bytes = 0;  // of the segment, mapped with 2 MiB pages (at open)

  // ---- time --------------------------------------------------------------------------------
  shm::TscClock clock;           // CLOCK_REALTIME, cheaper (shm/clock.hpp)
  std::int64_t now() noexcept {  // wall clock, never going backwards within this writer
    const std::int64_t t = clock.now();
    if (t > last_now) last_now = t;
    return last_now;
  }

  // ---- slots -------------------------------------------------------------------------------
  // The writer reads its own slots without the seqlock: nobody else writes them.
  const SlotPayload& peek(std::uint32_t s) const noexcept {
    return *reinterpret_cast<const SlotPayload*>(slots[s].payload);
  }

  // The one way the writer changes a slot: `n` payload words (index, new value). The old value
  // of each word that changes goes into the undo record, then seqlock W1-W4 (shm/seqlock.hpp)
  // stores just those words. An update touches only the lines it changes.
  void write_words(std::uint32_t s, const std::uint8_t* idx, const std::uint64_t* val,
                   std::size_t n) noexcept {
    Slot& slot = slots[s];
    UndoRecord& undo = wa->undo;
    // Ask for every line about to be written in exclusive state at once: a reader spinning on
    // this slot holds them shared, and taking them one by one would serialize the transfers.
    __builtin_prefetch(&slot, 1);
    for (std::size_t i = 0; i < n; ++i) __builtin_prefetch(&slot.payload[idx[i]], 1);
    std::uint64_t changed_val[kPayloadWords];
    std::size_t k = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t old = slot.payload[idx[i]];  // only this thread writes slots
      if (old == val[i]) continue;
      undo.word[k] = idx[i];
      undo.old[k] = old;
      changed_val[k] = val[i];
      ++k;
    }
    undo.count = k;
    undo.seq_before = slot.seq.load(kRelaxed);
    POSCACHE_FAULT_POINT(undo_saved);  // test builds only (writer/fault_points.hpp)
    // The record must be complete before it is armed, and armed before the slot turns odd, in
    // the order a crash would observe: program order, kept by the compiler (the CPU retires a
    // killed process's stores before the next writer can map the segment).
    std::atomic_signal_fence(std::memory_order_seq_cst);
    undo.slot_plus_one.store(s + 1u, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    POSCACHE_FAULT_POINT(undo_armed);
    const std::uint64_t seq = begin_write(slot);  // W1, W2
    POSCACHE_FAULT_POINT(after_w1);
    for (std::size_t j = 0; j < k; ++j) {
      if (j == k / 2) POSCACHE_FAULT_POINT(mid_w3);
      store_word(slot, undo.word[j], changed_val[j]);  // W3
    }
    publish(slot, seq);  // W4
    POSCACHE_FAULT_POINT(after_w4);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    undo.slot_plus_one.store(0, kRelaxed);
    POSCACHE_FAULT_POINT(undo_disarmed);
  }

  // A whole new payload (inserts, frees): every word is a candidate, only changed ones stored.
  void write_slot(std::uint32_t s, const SlotPayload& next) noexcept {
    static constexpr auto kAll = [] {
      std::array<std::uint8_t, kPayloadWords> a{};
      for (std::size_t i = 0; i < kPayloadWords; ++i) a[i] = static_cast<std::uint8_t>(i);
      return a;
    }();
    write_words(s, kAll.data(), reinterpret_cast<const std::uint64_t*>(&next), kPayloadWords);
  }

  // ---- lists (writer area) -----------------------------------------------------------------
  void account_link(std::uint32_t s, std::uint64_t ah) {
    SlotBook& b = book[s];
    b.account_prev = kNil;
    const std::uint32_t old = account_heads.find(ah);
    b.account_next = old == detail::AccountHeads::kNone ? kNil : old;
    if (b.account_next != kNil) book[b.account_next].account_prev = s;
    account_heads.set(ah, s);
  }
  void account_unlink(std::uint32_t s, std::uint64_t ah) {
    SlotBook& b = book[s];
    if (b.account_prev != kNil) {
      book[b.account_prev].account_next = b.account_next;
    } else if (b.account_next != kNil) {
      account_heads.set(ah, b.account_next);
    } else {
      account_heads.erase(ah);
    }
    if (b.account_next != kNil) book[b.account_next].account_prev = b.account_prev;
    b.account_prev = b.account_next = kNil;
  }

  // ---- index -------------------------------------------------------------------------------
  IndexWriter active_index() noexcept {
    return IndexWriter(index[h->index_epoch.load(kRelaxed) & 1], buckets);
  }

  std::uint32_t find(std::uint64_t hash, NamespaceId ns, std::string_view account,
                     std::string_view instrument) const noexcept {
    const Bucket* idx = index[h->index_epoch.load(kRelaxed) & 1];
    std::uint32_t found = kNil;
    probe(idx, buckets - 1, capacity, hash, [&](std::uint32_t s) {
      const SlotPayload& p = peek(s);
      if (p.key_hash == hash && p.ns == ns && p.account_len == account.size() &&
          p.instrument_len == instrument.size() &&
          std::memcmp(p.account, account.data(), account.size()) == 0 &&
          std::memcmp(p.instrument, instrument.data(), instrument.size()) == 0) {
        found = s;
        return true;
      }
      return false;
    });
    return found;
  }

  // B1 + B2: a fresh index of every live slot in the inactive copy, then publish it.
  // At re-attach `dedupe` also frees the older of two slots holding the same key (possible only
  // in a corrupt segment).
  void rebuild_index(bool dedupe) {
    const std::uint64_t e = h->index_epoch.load(kRelaxed);
    Bucket* target = index[(e + 1) & 1];
    IndexWriter iw(target, buckets);
    iw.clear();
    for (std::uint32_t s = 0; s < capacity; ++s) {
      const SlotPayload& p = peek(s);
      if (p.ns == kFreeNamespace) continue;
      if (dedupe) {
        std::uint32_t other = kNil;
        probe(target, buckets - 1, capacity, p.key_hash, [&](std::uint32_t o) {
          const SlotPayload& q = peek(o);
          if (q.ns == p.ns && q.account_len == p.account_len &&
              q.instrument_len == p.instrument_len &&
              std::memcmp(q.account, p.account, p.account_len) == 0 &&
              std::memcmp(q.instrument, p.instrument, p.instrument_len) == 0) {
            other = o;
            return true;
          }
          return false;
        });
        if (other != kNil) {
          const std::uint32_t loser = peek(other).version < p.version ? other : s;
          write_slot(loser, free_slot_payload());
          bump(h->repairs);
          if (loser == s) continue;
          // `other` is in the new index pointing at a now-free slot: point it at s instead.
          const std::uint64_t pos = iw.find_slot(p.key_hash, other);
          target[pos].store(make_bucket(bucket_tag(p.key_hash), s), kRelaxed);
          continue;
        }
      }
      iw.insert(p.key_hash, s);
    }
    h->index_epoch.store(e + 1, std::memory_order_release);  // B2: pairs with readers' L1/L4
    h->tombstones.store(0, kRelaxed);
    bump(h->index_rebuilds);
  }

  // The active index's tombstone count (a header counter readers may show; one writer).
  void add_tombstones(std::int64_t delta) noexcept {
    h->tombstones.store(h->tombstones.load(kRelaxed) + static_cast<std::uint64_t>(delta), kRelaxed);
  }

  void maybe_rebuild() {
    if (!defer_rebuild && h->tombstones.load(kRelaxed) > tombstone_limit) rebuild_index(false);
  }

  // ---- change notification -----------------------------------------------------------------
  void changed() noexcept {
    if (in_batch) return;  // apply() publishes once at the end
    // release: a reader that sees the new sequence (acquire) sees the change it announces
    h->change_seq.store(h->change_seq.load(kRelaxed) + 1, std::memory_order_release);
    wake_pending = true;
  }

  void wake_readers(std::int64_t t) noexcept {
    h->change_futex.store(h->change_futex.load(kRelaxed) + 1, std::memory_order_release);
    futex_wake_all(&h->change_futex);
    wake_pending = false;
    last_wake = t;
  }

  // ---- the operations ----------------------------------------------------------------------
  enum class Removal { eviction, expiration, erase, invalidation };

  void remove(std::uint32_t s, Removal why) {
    const SlotPayload& p = peek(s);  // read in place; not used once the slot is freed below
    if (sync && (why == Removal::eviction || why == Removal::expiration)) {
      // A change Redis has not acknowledged would leave with the slot: hand a copy to the sync
      // thread. acquire pairs with the sync thread's release store after Redis replied.
      const std::uint64_t synced =
          std::atomic_ref<std::uint64_t>(book[s].synced_version).load(std::memory_order_acquire);
      if (p.version > synced) {
        detail::SyncEvent& e = sync->add_event(detail::SyncEvent::Kind::spill, p.version, last_now);
        e.payload = p;
        sync->commit(e);  // in the journal before the slot is freed
      }
    }
    IndexWriter iw = active_index();
    const std::uint64_t pos = iw.find_slot(p.key_hash, s);
    if (pos < buckets) {
      add_tombstones(iw.remove_at(pos));  // D1 (+D3)
    }
    recency.forget(s);
    account_unlink(s, account_hash({p.account, p.account_len}));
    write_slot(s, free_slot_payload());  // D2
    book[s].next = wa->free_head;  // synced_version stays: the next occupant's versions are higher
    wa->free_head = s;
    h->live_count.store(h->live_count.load(kRelaxed) - 1, kRelaxed);
    switch (why) {
      case Removal::eviction:
        bump(h->evictions);
        break;
      case Removal::expiration:
        bump(h->expirations);
        break;
      case Removal::erase:
        bump(h->erases);
        break;
      case Removal::invalidation:
        bump(h->invalidations);
        break;
    }
    maybe_rebuild();
  }

  // The least recently updated position of all namespaces: the first live entry of the recency
  // log (in apply order, which is (updated_at, version) order: see rebuild_lists).
  void evict_one() { remove(recency.oldest(), Removal::eviction); }

  ApplyResult upsert(const Update& u) {
    return upsert_hashed(u, key_hash(u.ns, u.account_view(), u.instrument_view()), now());
  }

  // Applies updates in order, exactly as upsert() one at a time would, but overlaps their cache
  // misses (memory-level parallelism) in a software pipeline, kDistance updates apart per stage:
  //   A  hash update i, prefetch its index bucket
  //   B  read update i-D's bucket (now cached): if it names a slot with the key's tag (an
  //      update), prefetch that slot and its recency stamp; if not (an insert into a full
  //      table), take the next eviction victim from the recency log and prefetch its slot, stamp
  //      and bookkeeping
  //   C  read what B fetched for a victim: prefetch its index bucket, account-table entry and
  //      account neighbours
  //   D  apply update i-3D by the ordinary path, which finds its lines in cache
  // The prefetches are hints: an earlier update may change what a later one finds (another
  // insert, a rebuild), and the ordinary path always looks again. Victims are predicted along
  // the recency log from its front when the chunk starts.
  void upsert_batch(std::span<const Update> us, ApplyResult* out) {
    constexpr std::size_t kChunk = 256, kDistance = 16;
    std::uint64_t hashes[kChunk];
    std::uint32_t hint[kChunk];
    std::uint32_t victim[kChunk];
    const std::uint64_t mask = buckets - 1;
    for (std::size_t base = 0; base < us.size(); base += kChunk) {
      const std::size_t n = std::min(kChunk, us.size() - base);
      const Bucket* idx = index[h->index_epoch.load(kRelaxed) & 1];
      const std::int64_t t = now();  // one clock read per chunk: its updates share updated_at
      std::uint64_t lru_pos = recency.front_position();
      std::uint32_t cursor =
          wa->free_head == kNil ? recency.predict(lru_pos, 64) : detail::RecencyLog::kNone;
      for (std::size_t i = 0; i < n + 3 * kDistance; ++i) {
        if (i < n) {  // A
          const Update& u = us[base + i];
          hashes[i] = key_hash(u.ns, u.account_view(), u.instrument_view());
          __builtin_prefetch(&idx[hashes[i] & mask]);
        }
        if (i >= kDistance && i - kDistance < n) {  // B
          const std::size_t j = i - kDistance;
          const std::uint64_t b = idx[hashes[j] & mask].load(kRelaxed);
          const std::uint32_t ref = bucket_ref(b);
          const bool named = b != kEmptyBucket && ref != kTombstoneRef && ref - 1u < capacity &&
                             bucket_tag(b) == bucket_tag(hashes[j]);
          hint[j] = named ? ref - 1u : kNil;
          victim[j] = kNil;
          const std::uint32_t target = named ? hint[j] : cursor;
          if (!named && cursor < capacity) {
            victim[j] = cursor;
            cursor = recency.predict(lru_pos, 64);
          }
          if (target != kNil && target < capacity) {
            // An update touches the meta and key lines and its fields' lines; a victim is read
            // whole (its payload is cleared).
            const auto* line = reinterpret_cast<const char*>(&slots[target]);
            const std::size_t end =
                named ? 8 + 8 * (kWordValues + 2 * h->namespaces[us[base + j].ns].field_count)
                      : sizeof(Slot);
            for (std::size_t off = 0; off < end; off += kCacheLine)
              __builtin_prefetch(line + off, 1);
            __builtin_prefetch(recency.stamp_address(target), 1);
            if (!named || sync) __builtin_prefetch(&book[target], 1);  // account links; sync mark
          }
        }
        if (i >= 2 * kDistance && i - 2 * kDistance < n) {  // C
          const std::size_t j = i - 2 * kDistance;
          const std::uint32_t target = victim[j];
          if (target != kNil && target < capacity) {
            const SlotBook& bk = book[target];
            const SlotPayload& vp = peek(target);
            __builtin_prefetch(&idx[vp.key_hash & mask], 1);
            if (vp.account_len <= kMaxAccountLen)
              account_heads.prefetch(account_hash({vp.account, vp.account_len}));
            if (bk.account_prev < capacity) __builtin_prefetch(&book[bk.account_prev], 1);
            if (bk.account_next < capacity) __builtin_prefetch(&book[bk.account_next], 1);
          }
        }
        if (i >= 3 * kDistance) {  // D
          const std::size_t j = i - 3 * kDistance;
          out[base + j] = upsert_hashed(us[base + j], hashes[j], t);
        }
      }
    }
  }

  ApplyResult upsert_hashed(const Update& u, std::uint64_t hash, std::int64_t t) {
    const std::string_view account = u.account_view();
    const std::string_view instrument = u.instrument_view();
    const std::uint32_t nfields = h->namespaces[u.ns].field_count;
    ApplyResult r;
    std::uint32_t s = find(hash, u.ns, account, instrument);
    if (s != kNil) {
      // An update: only the words it changes (meta, version, source_seq, updated_at, the given
      // fields) are read, saved for undo and stored; the key and other fields stay untouched.
      const std::uint64_t* cur = slots[s].payload;
      if (u.source_seq != 0 && cur[kWordSourceSeq] != 0 && u.source_seq <= cur[kWordSourceSeq]) {
        bump(h->rejects);
        r.status = ApplyStatus::stale_source;
        r.version = cur[kWordVersion];
        return r;
      }
      std::uint8_t idx[4 + 2 * kMaxFields];
      std::uint64_t val[4 + 2 * kMaxFields];
      std::size_t n = 0;
      auto put = [&](std::size_t word, std::uint64_t v) {
        idx[n] = static_cast<std::uint8_t>(word);
        val[n++] = v;
      };
      const std::uint32_t fields_set = u.mode == UpdateMode::replace
                                           ? u.fields_mask
                                           : meta_fields_set(cur[kWordMeta]) | u.fields_mask;
      put(kWordMeta, meta_with_fields_set(cur[kWordMeta], fields_set));
      r.version = wa->next_version++;
      put(kWordVersion, r.version);
      if (u.source_seq != 0) put(kWordSourceSeq, u.source_seq);
      put(kWordUpdatedAt, static_cast<std::uint64_t>(t));
      for (std::uint32_t f = 0; f < nfields; ++f) {
        const bool given = ((u.fields_mask >> f) & 1u) != 0;
        if (!given && u.mode != UpdateMode::replace) continue;
        const auto v = given ? static_cast<unsigned __int128>(u.values[f]) : 0;
        put(kWordValues + 2 * f, static_cast<std::uint64_t>(v));
        put(kWordValues + 2 * f + 1, static_cast<std::uint64_t>(v >> 64));
      }
      write_words(s, idx, val, n);
      if (sync) sync->note_slot(book[s].queued_epoch, s, t);
      recency.touch(s, u.ns);
      bump(h->updates);
      r.status = ApplyStatus::updated;
      changed();
      return r;
    }
    // An insert: a free slot (evicting the least recently updated position if none is free).
    if (wa->free_head == kNil) {
      evict_one();
      r.evicted = true;
    }
    s = wa->free_head;
    wa->free_head = book[s].next;
    SlotPayload p{};
    p.key_hash = hash;
    p.ns = u.ns;
    p.account_len = u.account_len;
    p.instrument_len = u.instrument_len;
    std::memcpy(p.account, u.account, sizeof p.account);
    std::memcpy(p.instrument, u.instrument, sizeof p.instrument);
    for (std::uint32_t f = 0; f < nfields; ++f) {
      if ((u.fields_mask >> f) & 1u) set_field_value(p, f, u.values[f]);
    }
    p.fields_set = u.fields_mask;
    p.version = wa->next_version++;
    p.source_seq = u.source_seq;
    p.created_at_ns = t;
    p.updated_at_ns = t;
    write_slot(s, p);
    // I1 after the slot's publish: a reader that finds the bucket finds the key.
    const bool reused = active_index().insert(hash, s);
    if (reused) add_tombstones(-1);
    recency.touch(s, u.ns);
    account_link(s, account_hash(account));
    if (sync) sync->note_slot(book[s].queued_epoch, s, t);
    h->live_count.store(h->live_count.load(kRelaxed) + 1, kRelaxed);
    bump(h->inserts);
    r.status = ApplyStatus::inserted;
    r.version = p.version;
    changed();
    return r;
  }

  // Redis may hold positions the segment no longer does (evicted): a removal goes to Redis
  // whether or not the segment had the position, with a version of its own for the guard.
  void sync_erase(const KeyRef& k) {
    if (!sync) return;
    detail::SyncEvent& e =
        sync->add_event(detail::SyncEvent::Kind::erase, wa->next_version++, now());
    e.payload.ns = k.ns;
    e.payload.account_len = static_cast<std::uint8_t>(k.account.size());
    e.payload.instrument_len = static_cast<std::uint8_t>(k.instrument.size());
    std::memcpy(e.payload.account, k.account.data(), k.account.size());
    std::memcpy(e.payload.instrument, k.instrument.data(), k.instrument.size());
    sync->commit(e);  // in the journal before the position is removed
  }
  void sync_pattern(detail::SyncEvent::Kind kind, std::optional<NamespaceId> ns,
                    std::string_view text) {
    if (!sync) return;
    detail::SyncEvent& e = sync->add_event(kind, wa->next_version++, now());
    if (ns) e.ns = *ns;
    e.text.assign(text);
    sync->commit(e);  // in the journal before the positions are removed
  }

  ApplyResult erase(const KeyRef& k) {
    const std::uint64_t hash = key_hash(k.ns, k.account, k.instrument);
    const std::uint32_t s = find(hash, k.ns, k.account, k.instrument);
    ApplyResult r;
    sync_erase(k);
    if (s == kNil) {
      r.status = ApplyStatus::not_found;
      return r;
    }
    r.version = peek(s).version;
    remove(s, Removal::erase);
    r.status = ApplyStatus::erased;
    changed();
    return r;
  }

  // Removes many positions, rebuilding the index at most once at the end.
  std::size_t remove_all(const std::vector<std::uint32_t>& victims) {
    defer_rebuild = true;
    for (std::uint32_t s : victims) remove(s, Removal::invalidation);
    defer_rebuild = false;
    maybe_rebuild();
    if (!victims.empty()) changed();
    return victims.size();
  }

  std::size_t invalidate_account(std::string_view account, std::optional<NamespaceId> ns) {
    std::vector<std::uint32_t> victims;
    const std::uint32_t head = account_heads.find(account_hash(account));
    if (head != detail::AccountHeads::kNone) {
      for (std::uint32_t s = head; s != kNil; s = book[s].account_next) {
        const SlotPayload& p = peek(s);
        if (std::string_view(p.account, p.account_len) == account && (!ns || p.ns == *ns))
          victims.push_back(s);
      }
    }
    sync_pattern(detail::SyncEvent::Kind::account, ns, account);
    return remove_all(victims);
  }

  std::size_t invalidate_namespace(NamespaceId ns) {
    std::vector<std::uint32_t> victims;
    recency.for_each([&](std::uint32_t s, std::uint16_t of) {
      if (of == ns) victims.push_back(s);
    });
    sync_pattern(detail::SyncEvent::Kind::ns, ns, {});
    return remove_all(victims);
  }

  std::size_t invalidate_matching(std::string_view glob) {
    const std::string pattern(glob);
    std::vector<std::uint32_t> victims;
    std::string key;
    recency.for_each([&](std::uint32_t s, std::uint16_t ns) {
      const SlotPayload& p = peek(s);
      if (detail::key_matches(pattern.c_str(), key, fixed_name(h->namespaces[ns].name),
                              {p.account, p.account_len}, {p.instrument, p.instrument_len})) {
        victims.push_back(s);
      }
    });
    sync_pattern(detail::SyncEvent::Kind::glob, std::nullopt, glob);
    return remove_all(victims);
  }

  std::size_t invalidate_all() {
    std::vector<std::uint32_t> victims;
    recency.for_each([&](std::uint32_t s, std::uint16_t) { victims.push_back(s); });
    sync_pattern(detail::SyncEvent::Kind::all, std::nullopt, {});
    return remove_all(victims);
  }

  void tick() {
    const std::int64_t t = now();
    if (t - last_heartbeat >= cfg.heartbeat_interval.count()) {
      h->heartbeat_ns.store(t, kRelaxed);
      last_heartbeat = t;
    }
    // Removals are limited by expire_budget, and the log entries passed on the way (entries of
    // other namespaces, dead ones) by 16 times that: the apply loop stays responsive, and the
    // search resumes where it stopped.
    std::size_t budget = cfg.expire_budget;
    std::size_t pass_budget = 16 * cfg.expire_budget;
    bool expired = false;
    defer_rebuild = true;
    for (std::uint32_t ns = 0; ns < h->namespace_count && budget > 0; ++ns) {
      const std::int64_t ttl = h->namespaces[ns].expire_after_ns;
      if (ttl <= 0) continue;
      while (budget > 0) {
        const std::uint32_t oldest = recency.oldest_of(static_cast<std::uint16_t>(ns), pass_budget);
        if (oldest == detail::RecencyLog::kNone || peek(oldest).updated_at_ns + ttl > t) break;
        remove(oldest, Removal::expiration);
        expired = true;
        --budget;
      }
    }
    defer_rebuild = false;
    maybe_rebuild();
    if (expired) changed();
    if (wake_pending && t - last_wake >= cfg.wake_interval.count()) wake_readers(t);
    if (sync) sync->maybe_hand_off(t);
  }

  // ---- creation and re-attachment ----------------------------------------------------------
  void bind(Mapping m, std::uint64_t cap) {
    mapping = std::move(m);
    auto* base = static_cast<std::byte*>(mapping.base());
    h = reinterpret_cast<SegmentHeader*>(base);
    const Geometry g = geometry_for(cap);
    slots = reinterpret_cast<Slot*>(base + g.slots_offset);
    index[0] = reinterpret_cast<Bucket*>(base + g.index_offset[0]);
    index[1] = reinterpret_cast<Bucket*>(base + g.index_offset[1]);
    wa = reinterpret_cast<WriterArea*>(base + g.writer_offset);
    book = reinterpret_cast<SlotBook*>(base + g.book_offset);
    journal = reinterpret_cast<JournalHeader*>(base + g.journal_offset);
    journal_entries =
        reinterpret_cast<JournalEntry*>(base + g.journal_offset + sizeof(JournalHeader));
    journal_size = g.journal_entries;
    capacity = g.capacity;
    buckets = g.index_buckets;
    // Rebuild when tombstones pass a quarter of the buckets: live keys are at most half, so
    // occupied + tombstones stays under 3/4 and a miss probes a handful of buckets.
    tombstone_limit = buckets / 4;
    account_heads = detail::AccountHeads(capacity);
    recency = detail::RecencyLog(capacity);
    std::vector<std::uint16_t> expiring;
    for (std::size_t ns = 0; ns < cfg.namespaces.size(); ++ns) {
      if (cfg.namespaces[ns].expire_after.count() > 0)
        expiring.push_back(static_cast<std::uint16_t>(ns));
    }
    recency.set_expiring(expiring);
  }

  // Reads back how the segment is mapped and says so once, at open: an operator tuning latency
  // wants to know whether the 2 MiB pages took.
  void report_pages(bool created) {
    huge_page_bytes = huge_mapped_bytes(mapping.base(), mapping.size());
    const std::string what = "segment '" + cfg.segment +
                             "': " + std::to_string(huge_page_bytes >> 20) + " of " +
                             std::to_string(mapping.size() >> 20) + " MiB on 2 MiB pages";
    const std::string why = mapping.collapse_error().empty()
                                ? ""
                                : " (MADV_COLLAPSE: " + mapping.collapse_error() + ")";
    if (huge_page_bytes > 0 || mapping.size() < kHugePageSize) {
      cfg.log(LogLevel::info, what + why);
    } else if (created && cfg.huge_pages) {
      cfg.log(LogLevel::warn,
              what + (why.empty() ? " (MADV_COLLAPSE took no effect)" : why) +
                  ": every random access may also miss the TLB; see README, \"Huge pages\"");
    } else {
      cfg.log(LogLevel::info, what + (created ? " (huge_pages is off)"
                                              : " (as created; a fresh segment collapses)"));
    }
  }

  void stamp_writer() {
    const pid_t pid = ::getpid();
    const std::int64_t t = now();
    h->writer_pid.store(pid, kRelaxed);
    h->writer_start_ticks.store(process_start_ticks(pid), kRelaxed);
    h->writer_started_at_ns.store(t, kRelaxed);
    h->heartbeat_interval_ns.store(cfg.heartbeat_interval.count(), kRelaxed);
    h->heartbeat_ns.store(t, kRelaxed);
    last_heartbeat = t;
  }

  void create() {
    const std::string& name = cfg.segment;
    const Geometry g = geometry_for(cfg.capacity);
    int fd = -1;
    try {
      bip::permissions perm(cfg.mode);
      bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write, perm);
      fd = ::dup(shm.get_mapping_handle().handle);
    } catch (const bip::interprocess_exception& e) {
      throw Error("cannot create segment '" + name + "' (" + shm_path(name) + "): " + e.what());
    }
    auto fail_and_unlink = [&](const std::string& msg) {
      if (fd >= 0) ::close(fd);
      bip::shared_memory_object::remove(name.c_str());
      throw Error(msg);
    };
    if (fd < 0) fail_and_unlink("cannot create segment '" + name + "': " + std::strerror(errno));
    if (::fchmod(fd, cfg.mode) != 0) {  // exactly cfg.mode, whatever the umask
      fail_and_unlink("cannot set mode of " + shm_path(name) + ": " + std::strerror(errno));
    }
    if (::ftruncate(fd, static_cast<off_t>(g.segment_size)) != 0) {
      fail_and_unlink("cannot size segment '" + name + "' to " + std::to_string(g.segment_size) +
                      " bytes: " + std::strerror(errno));
    }
    // Allocate every page now: a /dev/shm too small fails here, not as SIGBUS on a later write.
    if (const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(g.segment_size)); err != 0) {
      fail_and_unlink("cannot allocate " + std::to_string(g.segment_size) + " bytes (" +
                      std::to_string(g.segment_size >> 20) + " MiB) for segment '" + name +
                      "' with capacity " + std::to_string(cfg.capacity) + " in /dev/shm: " +
                      std::strerror(err) + " (lower the capacity or enlarge /dev/shm)");
    }
    bind(Mapping::map(fd, g.segment_size, true, name,
                      cfg.huge_pages ? HugePages::collapse : HugePages::keep),
         g.capacity);
    // The file is zero-filled: readers attaching now see an empty header and wait (initializing).
    h->layout_version = kLayoutVersion;
    h->header_size = sizeof(SegmentHeader);
    h->layout_fingerprint = layout_fingerprint();
    std::random_device rd;
    h->generation =
        (static_cast<std::uint64_t>(now()) ^ (static_cast<std::uint64_t>(rd()) << 32)) | 1u;
    h->capacity = g.capacity;
    h->index_buckets = g.index_buckets;
    h->segment_size = g.segment_size;
    h->slots_offset = g.slots_offset;
    h->index_offset[0] = g.index_offset[0];
    h->index_offset[1] = g.index_offset[1];
    h->writer_offset = g.writer_offset;
    h->namespace_count = static_cast<std::uint32_t>(cfg.namespaces.size());
    for (std::size_t i = 0; i < cfg.namespaces.size(); ++i) {
      const NamespaceSpec& n = cfg.namespaces[i];
      NamespaceDesc& d = h->namespaces[i];
      copy_name(d.name, n.name);
      d.field_count = static_cast<std::uint32_t>(n.fields.size());
      d.stale_after_ns = n.stale_after.count();
      d.expire_after_ns = n.expire_after.count();
      for (std::size_t f = 0; f < n.fields.size(); ++f) {
        copy_name(d.fields[f].name, n.fields[f].name);
        d.fields[f].type = static_cast<std::uint8_t>(n.fields[f].type);
        d.fields[f].scale = n.fields[f].scale;
      }
    }
    h->state.store(static_cast<std::uint32_t>(SegmentState::initializing), kRelaxed);
    // Every slot free, every list empty. Slot seqs start at 0 (even).
    for (std::uint32_t s = 0; s < capacity; ++s) {
      // free_slot_payload(): the file is zero from posix_fallocate, so only the namespace is
      // stored (one line per slot instead of seven).
      reinterpret_cast<SlotPayload*>(slots[s].payload)->ns = kFreeNamespace;
      book[s] = SlotBook{s + 1 < capacity ? s + 1 : kNil, kNil, kNil, 0, 0, 0};
    }
    wa->free_head = 0;
    // Versions start at the wall clock in ns and count up by one per change: a writer that
    // starts over on a new segment still hands out versions above any it handed out before
    // (it would have to apply more than one change per ns to catch up), so Redis's version
    // guard accepts its changes. A warm start raises it above every version loaded.
    wa->next_version = static_cast<std::uint64_t>(std::max<std::int64_t>(1, now()));
    stamp_writer();
    std::atomic_thread_fence(std::memory_order_release);
    // Magic last among the identity words: a reader that sees it sees a complete header.
    h->magic.store(kMagic, std::memory_order_release);
  }

  // A segment left by an earlier writer (crashed or closed): repair, rebuild what is derived.
  void reattach() {
    reattached = true;
    const auto prev_state = static_cast<SegmentState>(h->state.load(kRelaxed));
    if (prev_state == SegmentState::ready) bump(h->writer_restarts);  // it did not close cleanly
    // 1. The slot caught mid-write, if any: restore it from the undo record.
    const std::uint64_t armed = wa->undo.slot_plus_one.load(std::memory_order_acquire);
    for (std::uint32_t s = 0; s < capacity; ++s) {
      const std::uint64_t seq = slots[s].seq.load(kRelaxed);
      if ((seq & 1) == 0) continue;
      const UndoRecord& undo = wa->undo;
      if (armed == s + 1u && undo.seq_before + 1 == seq && undo.count <= kPayloadWords) {
        // Put back the words the cut write had changed; the others it never touched.
        for (std::size_t k = 0; k < undo.count; ++k) {
          if (undo.word[k] < kPayloadWords) store_word(slots[s], undo.word[k], undo.old[k]);
        }
      } else {  // no record for it: corrupt; drop the position rather than serve half of it
        const SlotPayload freed = free_slot_payload();
        std::uint64_t words[kPayloadWords];
        std::memcpy(words, &freed, sizeof words);
        for (std::size_t i = 0; i < kPayloadWords; ++i) store_word(slots[s], i, words[i]);
      }
      slots[s].seq.store(seq + 1, std::memory_order_release);  // even again, != the pre-write seq
      bump(h->repairs);
    }
    wa->undo.slot_plus_one.store(0, kRelaxed);
    // 2. A namespace id beyond the table can only come from corruption: drop that position.
    for (std::uint32_t s = 0; s < capacity; ++s) {
      const std::uint16_t ns = peek(s).ns;
      if (ns != kFreeNamespace && ns >= h->namespace_count) {
        write_slot(s, free_slot_payload());
        bump(h->repairs);
      }
    }
    // 3. The index: derived from the slots, rebuilt into the inactive copy and published.
    rebuild_index(true);
    // 4. Free list, LRU lists (by updated_at), account lists, live count, next version.
    rebuild_lists();
    // 5. A removal recorded in the journal may have been cut short by the kill: finish it.
    scan_journal();
    complete_journal();
    stamp_writer();
  }

  // The journal's pending entries, [tail, head), checked once at re-attach (a fresh journal is
  // empty): `valid` oldest first; `invalid` are entries no writer could have written (corrupt
  // memory), skipped and reported rather than replayed: an unknown kind must never become a
  // "remove everything" in Redis.
  struct JournalScan {
    std::vector<std::pair<std::uint64_t, const JournalEntry*>> valid;
    std::vector<std::uint64_t> invalid;
  };
  JournalScan journal_scan;

  std::string journal_entry_problem(const JournalEntry& e) const {
    using Kind = detail::SyncEvent::Kind;
    if (e.kind > static_cast<std::uint8_t>(Kind::all))
      return "unknown kind " + std::to_string(e.kind);
    if (e.version == 0 || e.version >= wa->next_version) {
      return "version " + std::to_string(e.version) + " was never handed out (next is " +
             std::to_string(wa->next_version) + ")";
    }
    if (e.text_len > kJournalTextMax) return "text length " + std::to_string(e.text_len);
    const auto kind = static_cast<Kind>(e.kind);
    const std::string_view text(e.text, e.text_len);
    if ((kind == Kind::ns || (kind == Kind::account && e.has_ns != 0)) &&
        e.ns >= h->namespace_count) {
      return "namespace id " + std::to_string(e.ns);
    }
    if (kind == Kind::ns && e.has_ns == 0) return "namespace removal without a namespace";
    if (kind == Kind::account && !valid_account(text)) return "account is not a valid account";
    if (kind == Kind::glob && text.empty()) return "empty pattern";
    if (kind == Kind::spill || kind == Kind::erase) {
      const SlotPayload& p = e.payload;
      if (p.ns >= h->namespace_count) return "namespace id " + std::to_string(p.ns);
      if (p.account_len > kMaxAccountLen || !valid_account({p.account, p.account_len}))
        return "invalid account";
      if (p.instrument_len > kMaxInstrumentLen ||
          !valid_instrument({p.instrument, p.instrument_len}))
        return "invalid instrument";
      if (kind == Kind::spill && p.version != e.version)
        return "spill of version " + std::to_string(p.version);
    }
    return {};
  }

  void scan_journal() {
    journal_scan = {};
    const std::uint64_t head = journal->head.load(std::memory_order_acquire);
    const std::uint64_t tail = journal->tail.load(std::memory_order_acquire);
    if (head < tail || head - tail > journal_size) {
      cfg.log(LogLevel::error,
              "re-attach: the journal's header is corrupt (head " + std::to_string(head) +
                  ", tail " + std::to_string(tail) + ", " + std::to_string(journal_size) +
                  " entries): its entries are dropped, Redis may keep removed positions");
      journal->tail.store(head, std::memory_order_release);
      bump(h->repairs);
      return;
    }
    std::string first_problem;
    for (std::uint64_t n = tail; n < head; ++n) {
      const JournalEntry& e = journal_entries[n % journal_size];
      if (std::string why = journal_entry_problem(e); !why.empty()) {
        if (first_problem.empty()) first_problem = "entry " + std::to_string(n) + ": " + why;
        journal_scan.invalid.push_back(n);
        continue;
      }
      journal_scan.valid.emplace_back(n, &e);
    }
    if (!journal_scan.invalid.empty()) {
      bump(h->repairs, journal_scan.invalid.size());
      cfg.log(LogLevel::error, "re-attach: skipped " + std::to_string(journal_scan.invalid.size()) +
                                   " corrupt journal entries (" + first_problem + ")");
    }
  }

  // Re-attach: an erase or invalidation whose entry is in the journal was recorded before it was
  // applied; a kill -9 may have stopped it half way. Remove what it covers that is older than
  // it (anything newer was written after it). Spills need nothing: the position was either
  // still in its slot or already gone.
  void complete_journal() {
    using Kind = detail::SyncEvent::Kind;
    std::size_t finished = 0;
    for (const auto& [n, entry] : journal_scan.valid) {
      const detail::SyncEvent e = detail::from_entry(*entry, n);
      std::vector<std::uint32_t> victims;
      auto consider = [&](std::uint32_t s) {
        const SlotPayload& p = peek(s);
        if (p.ns != kFreeNamespace && p.version < e.version &&
            detail::covers(e, fixed_name(h->namespaces[p.ns].name), p)) {
          victims.push_back(s);
        }
      };
      if (e.kind == Kind::spill) continue;  // the position was still in its slot or already gone
      if (e.kind == Kind::erase) {          // one key: the index finds it
        const SlotPayload& k = e.payload;
        const std::uint32_t s =
            find(key_hash(k.ns, {k.account, k.account_len}, {k.instrument, k.instrument_len}), k.ns,
                 {k.account, k.account_len}, {k.instrument, k.instrument_len});
        if (s != kNil) consider(s);
      } else if (e.kind == Kind::account) {  // one account: its list
        const std::uint32_t head = account_heads.find(account_hash(e.text));
        for (std::uint32_t s = head == detail::AccountHeads::kNone ? kNil : head; s != kNil;
             s = book[s].account_next) {
          consider(s);
        }
      } else {  // a namespace, a glob, everything (rare): every slot
        for (std::uint32_t s = 0; s < capacity; ++s) consider(s);
      }
      finished += remove_all(victims);
    }
    if (finished > 0) {
      bump(h->repairs, finished);
      cfg.log(LogLevel::warn,
              "re-attach: finished " + std::to_string(finished) +
                  " removals of positions that a killed writer had recorded but not completed");
    }
  }

  // Free list, LRU order by (updated_at, version), account lists, live count and next version,
  // all derived from the slots.
  void rebuild_lists() {
    std::vector<std::tuple<std::int64_t, std::uint64_t, std::uint32_t>>
        order;  // updated_at, version, slot
    std::uint64_t max_version = 0;
    wa->free_head = kNil;
    account_heads.clear();
    recency.clear();
    for (auto s = static_cast<std::uint32_t>(capacity); s-- > 0;) {
      const SlotPayload& p = peek(s);
      book[s].next = book[s].account_prev = book[s].account_next = kNil;
      if (p.ns == kFreeNamespace) {
        book[s].next = wa->free_head;
        book[s].synced_version = 0;
        wa->free_head = s;
        continue;
      }
      order.emplace_back(p.updated_at_ns, p.version, s);
      max_version = std::max(max_version, p.version);
    }
    std::sort(order.begin(), order.end());
    for (const auto& [t, v, s] : order) {
      const SlotPayload& p = peek(s);
      recency.touch(s, p.ns);
      account_link(s, account_hash({p.account, p.account_len}));
    }
    h->live_count.store(order.size(), kRelaxed);
    wa->next_version = std::max(wa->next_version, max_version + 1);
  }

  // Warm start: one position from Redis, with its own version and timestamps, already synced.
  // Returns the number of positions that did not fit (0 or 1). Once the table is full, a
  // min-heap of (updated_at, version) over the loaded positions keeps exactly the most recently
  // updated `capacity` of them; the others stay only in Redis.
  std::uint64_t restore(const SlotPayload& in) {
    SlotPayload p = in;
    p.key_hash = key_hash(p.ns, {p.account, p.account_len}, {p.instrument, p.instrument_len});
    const std::uint32_t existing =
        find(p.key_hash, p.ns, {p.account, p.account_len}, {p.instrument, p.instrument_len});
    if (existing != kNil) {  // Redis has one hash per key; keep the newer if it ever differs
      if (peek(existing).version >= p.version) return 0;
      remove(existing, Removal::invalidation);
    }
    using Age =
        std::tuple<std::int64_t, std::uint64_t, std::uint32_t>;  // updated_at, version, slot
    auto newer_first = [](const Age& a, const Age& b) { return a > b; };  // std heap: min at front
    std::uint64_t dropped = 0;
    if (wa->free_head == kNil) {
      if (warm_heap.empty()) {
        for (std::uint32_t s = 0; s < capacity; ++s)
          warm_heap.emplace_back(peek(s).updated_at_ns, peek(s).version, s);
        std::make_heap(warm_heap.begin(), warm_heap.end(), newer_first);
      }
      const auto [t, v, victim] = warm_heap.front();
      if (std::make_pair(p.updated_at_ns, p.version) < std::make_pair(t, v))
        return 1;  // older than all loaded
      std::pop_heap(warm_heap.begin(), warm_heap.end(), newer_first);
      warm_heap.pop_back();
      remove(victim, Removal::eviction);
      dropped = 1;
    }
    const std::uint32_t s = wa->free_head;
    wa->free_head = book[s].next;
    write_slot(s, p);
    if (active_index().insert(p.key_hash, s)) add_tombstones(-1);
    recency.touch(s, p.ns);
    account_link(s, account_hash({p.account, p.account_len}));
    book[s].synced_version =
        p.version;  // Redis holds exactly this (the sync thread is not running yet)
    h->live_count.store(h->live_count.load(kRelaxed) + 1, kRelaxed);
    wa->next_version = std::max(wa->next_version, p.version + 1);
    if (!warm_heap.empty()) {
      warm_heap.emplace_back(p.updated_at_ns, p.version, s);
      std::push_heap(warm_heap.begin(), warm_heap.end(), newer_first);
    }
    return dropped;
  }
  std::vector<std::tuple<std::int64_t, std::uint64_t, std::uint32_t>> warm_heap;

  // With Redis: warm start on an empty segment (before it turns ready), then the sync thread.
  void start_redis(bool empty_segment) {
    const JournalScan scan =
        std::move(journal_scan);  // used here last: not kept for the writer's life
    journal_scan = {};
    const auto& pending = scan.valid;
    if (!cfg.redis) {
      if (!pending.empty()) {
        cfg.log(LogLevel::warn,
                std::to_string(pending.size()) +
                    " removals in the segment's journal are not in Redis yet; "
                    "they stay there until a writer with Redis configured writes them");
      }
      return;
    }
    const RedisConfig& rc = *cfg.redis;
    sync = std::make_unique<detail::RedisSync>(
        rc, cfg.namespaces,
        detail::SegmentView{h, slots, book, capacity, journal, journal_entries, journal_size},
        cfg.log);
    for (const auto& [n, e] : pending) sync->replay(detail::from_entry(*e, n));
    for (const std::uint64_t n : scan.invalid) sync->skip(n);  // reported: let the tail pass them
    bool started = false;
    if (!pending.empty()) {
      cfg.log(LogLevel::info, "journal: " + std::to_string(pending.size()) +
                                  " removals a previous writer left go to Redis first");
    }
    if (empty_segment && rc.warm_start) {
      if (!pending.empty()) {
        // Load only after Redis has the removals: a warm start before them would bring back
        // what they removed.
        sync->start();
        started = true;
        if (!sync->flush(rc.connect_timeout + rc.close_timeout)) {
          throw Error(
              "warm start: " + std::to_string(pending.size()) +
              " removals left in the segment's journal "
              "could not be written to Redis first (the segment stays initializing; start with "
              "--cold-start, or RedisConfig::warm_start = false, to start without loading)");
        }
      }
      detail::RedisFormat fmt(rc.prefix, cfg.namespaces);
      auto rep = detail::warm_start(
          rc, fmt, [this](const SlotPayload& p) { return restore(p); },
          [this] { h->heartbeat_ns.store(now(), kRelaxed); }, cfg.log);
      if (!rep) {
        throw Error(rep.error() +
                    " (the segment stays initializing; start with --cold-start, or "
                    "RedisConfig::warm_start = false, to start empty)");
      }
      rebuild_lists();  // LRU order by updated_at, as if the positions had arrived in that order
      warm_heap = {};
      warm = *rep;
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.2f", warm.seconds);
      cfg.log(LogLevel::info,
              "warm start: loaded " + std::to_string(warm.loaded) + " positions in " + secs + " s");
      if (warm.beyond_capacity > 0) {
        cfg.log(LogLevel::warn, "warm start: " + std::to_string(warm.beyond_capacity) +
                                    " positions did not fit in capacity " +
                                    std::to_string(capacity) +
                                    " and stay only in Redis (the least recently updated)");
      }
      if (warm.expired + warm.unknown_namespace + warm.malformed > 0) {
        cfg.log(LogLevel::warn, "warm start: skipped " + std::to_string(warm.expired) +
                                    " expired, " + std::to_string(warm.unknown_namespace) +
                                    " of unknown namespaces, " + std::to_string(warm.malformed) +
                                    " malformed");
      }
    }
    if (reattached) queue_unsynced();
    if (!started) sync->start();
  }

  // Re-attached: every slot whose version Redis has not acknowledged goes to the sync thread
  // (the batches a killed writer held in its memory are gone; the slots are not).
  void queue_unsynced() {
    const std::int64_t t = now();
    for (std::uint32_t s = 0; s < capacity; ++s) {
      const SlotPayload& p = peek(s);
      if (p.ns != kFreeNamespace && p.version > book[s].synced_version)
        sync->note_slot(book[s].queued_epoch, s, t);
    }
  }
};

// =============================================================================================
Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Writer::~Writer() {
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() only touches mapped memory
  }
}

namespace {
// Whether `size` is the size geometry_for() gives a segment of some capacity (what a creation
// sizes its file to before it writes anything): segment sizes grow with the capacity.
bool is_segment_size(std::size_t size) {
  std::uint64_t lo = 1, hi = kMaxCapacity;
  while (lo < hi) {  // the smallest capacity whose segment is at least `size`
    const std::uint64_t mid = lo + (hi - lo) / 2;
    if (geometry_for(mid).segment_size < size)
      lo = mid + 1;
    else
      hi = mid;
  }
  return geometry_for(lo).segment_size == size;
}

// Every check of a WriterConfig that needs no segment; throws Error naming the setting and value.
void check_config(const WriterConfig& config) {
  std::string msg;
  if (!valid_segment_name(config.segment, msg)) throw Error(msg);
  // The segment's slot references and the recency log's stamps both bound the capacity.
  constexpr std::uint64_t kLimit =
      std::min<std::uint64_t>(kMaxCapacity, detail::RecencyLog::kMaxCapacity);
  if (config.capacity == 0 || config.capacity > kLimit) {
    throw Error("capacity " + std::to_string(config.capacity) + " is out of range: 1 to " +
                std::to_string(kLimit));
  }
  if (config.namespaces.empty())
    throw Error("no namespaces configured: a segment needs at least one");
  if (config.namespaces.size() > kMaxNamespaces) {
    throw Error(std::to_string(config.namespaces.size()) + " namespaces configured: the limit is " +
                std::to_string(kMaxNamespaces));
  }
  for (std::size_t i = 0; i < config.namespaces.size(); ++i) {
    if (auto r = validate(config.namespaces[i]); !r) throw Error(r.error());
    for (std::size_t j = 0; j < i; ++j) {
      if (config.namespaces[j].name == config.namespaces[i].name) {
        throw Error("namespace '" + config.namespaces[i].name + "' is configured twice");
      }
    }
  }
  if (config.heartbeat_interval.count() <= 0) throw Error("heartbeat_interval must be positive");
  if ((config.mode & ~0777u) != 0 || (config.mode & 0600u) != 0600u) {
    char octal[16];
    std::snprintf(octal, sizeof octal, "0%o", static_cast<unsigned>(config.mode));
    throw Error(std::string("segment mode ") + octal +
                " must grant its owner read and write and use only permission bits (e.g. 0640)");
  }

  if (config.redis) {
    if (auto v = validate(*config.redis); !v) throw Error(v.error());
  }
}
}  // namespace

Expected<bool> validate(const WriterConfig& config) {
  try {
    check_config(config);
  } catch (const Error& e) {
    return fail(e.what());
  }
  return true;
}

std::unique_ptr<Writer> Writer::open(const WriterConfig& config) {
  check_config(config);

  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  if (!impl->cfg.log) {
    impl->cfg.log = [](LogLevel level, std::string_view text) {
      static constexpr const char* kName[] = {"debug", "info", "warn", "error"};
      std::cerr << "poscache-writer [" << kName[static_cast<int>(level)] << "] " << text << '\n';
    };
  }
  impl->lock = detail::WriterLock::acquire(config.segment, config.mode);
  const std::string& name = config.segment;

  // An existing segment: re-attach if it is ours and matches the config.
  int fd = -1;
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    fd = ::dup(shm.get_mapping_handle().handle);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::not_found_error) {
      throw Error("cannot open existing segment '" + name + "': " + e.what());
    }
  }
  if (fd >= 0) {
    struct stat st {};
    ::fstat(fd, &st);
    bool replace = config.fresh;
    std::string why;
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0) {
      ::close(fd);
      replace = true;  // a creation that died between shm_open and sizing it: nothing to keep
    } else if (size < sizeof(SegmentHeader) && !config.recreate_on_mismatch) {
      // Not ours: a creation sizes the file in one step, to a whole segment.
      ::close(fd);
      throw Error("segment '" + name + "': " + shm_path(name) +
                  " exists and is not a poscache segment (" + std::to_string(size) +
                  " bytes; a creation cut short leaves 0 bytes or a whole segment). " +
                  "Remove it, choose another name, or start with --recreate to replace it");
    } else if (size < sizeof(SegmentHeader)) {
      ::close(fd);
      replace = true;  // --recreate: asked for
    } else {
      Mapping m = Mapping::map(fd, static_cast<std::size_t>(st.st_size), true, name);
      auto* h = static_cast<SegmentHeader*>(m.base());
      const AttachStatus status = check_header(*h, m.size(), why);
      bool compatible = status == AttachStatus::ok && h->capacity == config.capacity &&
                        h->namespace_count == config.namespaces.size();
      if (status == AttachStatus::ok && !compatible) {
        why = "expected capacity " + std::to_string(config.capacity) + " with namespaces " +
              ns_list(config.namespaces) + ", found capacity " + std::to_string(h->capacity) +
              " with " + std::to_string(h->namespace_count) + " namespaces";
      }
      for (std::size_t i = 0; compatible && i < config.namespaces.size(); ++i) {
        if (!same_schema(h->namespaces[i], config.namespaces[i])) {
          compatible = false;
          why = "namespace " + std::to_string(i) + ": expected " + describe(config.namespaces[i]) +
                ", found " + describe(spec_of(h->namespaces[i]));
        }
      }
      // A header never finished (magic not yet stored) is ours, cut short, only if the file has
      // exactly the size a creation gives a segment; otherwise it is someone else's file.
      const bool cut_creation =
          status == AttachStatus::initializing &&
          (h->magic.load(std::memory_order_acquire) == kMagic || is_segment_size(size));
      if (status == AttachStatus::initializing && !cut_creation) {
        why = "found " + std::to_string(size) +
              " bytes that begin with an empty header, not a segment size";
      }
      if (cut_creation) {
        replace = true;  // its creator died before it was ready: nothing was ever served
      } else if (!compatible && !replace) {
        if (!config.recreate_on_mismatch) {
          throw Error("segment '" + name + "' exists but does not match this writer: " + why +
                      " (start with --recreate to replace it: readers follow the new generation)");
        }
        replace = true;
      }
      if (!replace) {
        const std::uint64_t cap = h->capacity;
        impl->bind(std::move(m), cap);
        impl->report_pages(false);
        impl->reattach();
        impl->start_redis(impl->h->live_count.load(kRelaxed) == 0);
        impl->h->state.store(static_cast<std::uint32_t>(SegmentState::ready),
                             std::memory_order_release);
        return std::unique_ptr<Writer>(new Writer(std::move(impl)));
      }
      if (status == AttachStatus::ok) {  // same layout: its journal can be read
        const Geometry g = geometry_for(h->capacity);
        const auto* j = reinterpret_cast<const JournalHeader*>(
            static_cast<const std::byte*>(m.base()) + g.journal_offset);
        const std::uint64_t pending =
            j->head.load(std::memory_order_acquire) - j->tail.load(std::memory_order_acquire);
        if (pending > 0 && config.log) {
          config.log(LogLevel::warn,
                     "replacing segment '" + name + "' drops " + std::to_string(pending) +
                         " removals its journal had not written to Redis yet (a warm start may "
                         "bring those positions back)");
        }
      }
      if (status == AttachStatus::ok || status == AttachStatus::initializing) {
        // Tell readers of the old generation to follow: they keep a valid mapping meanwhile.
        h->state.store(static_cast<std::uint32_t>(SegmentState::retired),
                       std::memory_order_release);
        futex_wake_all(&h->change_futex);
      }
    }
    bip::shared_memory_object::remove(name.c_str());
  }
  impl->create();
  impl->report_pages(true);
  impl->start_redis(true);
  impl->h->state.store(static_cast<std::uint32_t>(SegmentState::ready), std::memory_order_release);
  return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

Expected<NamespaceId> Writer::namespace_id(std::string_view ns) const {
  const auto& specs = impl_->cfg.namespaces;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name == ns) return static_cast<NamespaceId>(i);
  }
  std::string shown(ns.substr(0, 64));
  return fail("unknown namespace '" + shown + "': this segment has " + ns_list(specs));
}

Expected<KeyRef> Writer::make_key(std::string_view ns, std::string_view account,
                                  std::string_view instrument) const {
  auto id = namespace_id(ns);
  if (!id) return fail(id.error());
  if (auto r = validate_account(account); !r) return fail(r.error());
  if (auto r = validate_instrument(instrument); !r) return fail(r.error());
  return KeyRef{*id, std::string(account), std::string(instrument)};
}

Expected<Update> Writer::make_update(
    std::string_view ns, std::string_view account, std::string_view instrument,
    std::span<const std::pair<std::string_view, std::string_view>> fields, std::uint64_t source_seq,
    UpdateMode mode) const {
  auto id = namespace_id(ns);
  if (!id) return fail(id.error());
  const NamespaceSpec& spec = impl_->cfg.namespaces[*id];
  if (fields.empty()) {
    return fail("update of " + spec.name + ":" + std::string(account.substr(0, 64)) + ":" +
                std::string(instrument.substr(0, 64)) + " sets no fields");
  }
  std::uint32_t mask = 0;
  int128 values[kMaxFields] = {};
  for (const auto& [name, text] : fields) {
    std::size_t f = 0;
    while (f < spec.fields.size() && spec.fields[f].name != name) ++f;
    if (f == spec.fields.size()) {
      std::string known;
      for (const auto& fs : spec.fields) known += (known.empty() ? "" : ", ") + fs.name;
      return fail("namespace '" + spec.name + "' has no field '" + std::string(name.substr(0, 64)) +
                  "': its fields are " + known);
    }
    if ((mask >> f) & 1u) return fail("field '" + spec.fields[f].name + "' is given twice");
    mask |= 1u << f;
    const FieldSpec& fs = spec.fields[f];
    if (fs.type == FieldType::decimal) {
      auto v = parse_decimal(text, fs.scale);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      values[f] = *v;
    } else {
      auto v = parse_int64(text);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      values[f] = *v;
    }
  }
  return make_update(*id, account, instrument, mask, values, source_seq, mode);
}

Expected<Update> Writer::make_update(NamespaceId ns, std::string_view account,
                                     std::string_view instrument, std::uint32_t mask,
                                     const int128* values, std::uint64_t source_seq,
                                     UpdateMode mode) const {
  const auto& specs = impl_->cfg.namespaces;
  if (ns >= specs.size()) {
    return fail("namespace id " + std::to_string(ns) + " is out of range: this segment has " +
                std::to_string(specs.size()) + " namespaces");
  }
  if (auto r = validate_account(account); !r) return fail(r.error());
  if (auto r = validate_instrument(instrument); !r) return fail(r.error());
  const NamespaceSpec& spec = specs[ns];
  const std::size_t n = spec.fields.size();
  if (mask == 0) return fail("update of namespace '" + spec.name + "' sets no fields");
  if (n < 32 && (mask >> n) != 0) {
    return fail("update of namespace '" + spec.name + "' sets field bit(s) beyond its " +
                std::to_string(n) + " fields");
  }
  Update u;
  u.ns = ns;
  u.mode = mode;
  u.fields_mask = mask;
  u.source_seq = source_seq;
  u.account_len = static_cast<std::uint8_t>(account.size());
  u.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(u.account, account.data(), account.size());
  std::memcpy(u.instrument, instrument.data(), instrument.size());
  for (std::size_t f = 0; f < n; ++f) {
    if (!((mask >> f) & 1u)) continue;
    const int128 v = values[f];
    if (spec.fields[f].type == FieldType::decimal) {
      if (v >= kDecimalLimit || v <= -kDecimalLimit) {
        return fail("field '" + spec.fields[f].name + "': mantissa " + format_decimal(v, 0) +
                    " has more than " + std::to_string(kMaxDecimalDigits) + " digits");
      }
    } else if (v > INT64_MAX || v < INT64_MIN) {
      return fail("field '" + spec.fields[f].name + "': " + format_decimal(v, 0) +
                  " is out of the 64-bit range");
    }
    u.values[f] = v;
  }
  return u;
}

namespace {
// The checks of check(Update) below, answering only yes or no: what upsert() and upsert_batch()
// need (their results carry no message); apply() builds the message with check().
bool valid(const Update& u, const std::vector<NamespaceSpec>& specs) noexcept {
  if (u.ns >= specs.size() || u.account_len > kMaxAccountLen ||
      u.instrument_len > kMaxInstrumentLen)
    return false;
  if (!valid_account(u.account_view()) || !valid_instrument(u.instrument_view())) return false;
  const std::size_t n = specs[u.ns].fields.size();
  if (u.fields_mask == 0 || (n < 32 && (u.fields_mask >> n) != 0)) return false;
  for (std::size_t f = 0; f < n; ++f) {
    if (((u.fields_mask >> f) & 1u) &&
        (u.values[f] >= kDecimalLimit || u.values[f] <= -kDecimalLimit))
      return false;
  }
  return true;
}

// Re-checks an Update built by hand (not through make_update) so a malformed one never lands.
std::string check(const Update& u, const std::vector<NamespaceSpec>& specs) {
  if (valid(u, specs)) return {};
  if (u.ns >= specs.size()) return "namespace id " + std::to_string(u.ns) + " is out of range";
  if (u.account_len == 0 || u.account_len > kMaxAccountLen)
    return "account length " + std::to_string(u.account_len) + " is out of range 1..64";
  if (u.instrument_len == 0 || u.instrument_len > kMaxInstrumentLen)
    return "instrument length " + std::to_string(u.instrument_len) + " is out of range 1..64";
  if (auto r = validate_account(u.account_view()); !r) return r.error();
  if (auto r = validate_instrument(u.instrument_view()); !r) return r.error();
  const std::size_t n = specs[u.ns].fields.size();
  if (u.fields_mask == 0 || (n < 32 && (u.fields_mask >> n) != 0))
    return "field mask does not match the namespace's " + std::to_string(n) + " fields";
  for (std::size_t f = 0; f < n; ++f) {
    if (((u.fields_mask >> f) & 1u) &&
        (u.values[f] >= kDecimalLimit || u.values[f] <= -kDecimalLimit)) {
      return "field '" + specs[u.ns].fields[f].name + "' has more than 38 digits";
    }
  }
  return {};
}
std::string check(const KeyRef& k, const std::vector<NamespaceSpec>& specs) {
  if (k.ns >= specs.size()) return "namespace id " + std::to_string(k.ns) + " is out of range";
  if (auto r = validate_account(k.account); !r) return r.error();
  if (auto r = validate_instrument(k.instrument); !r) return r.error();
  return {};
}
}  // namespace

ApplyResult Writer::upsert(const Update& update) {
  if (!valid(update, impl_->cfg.namespaces)) {  // (the result carries no message: none is built)
    bump(impl_->h->rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return impl_->upsert(update);
}

void Writer::upsert_batch(std::span<const Update> updates, std::span<ApplyResult> results) {
  if (results.size() < updates.size())
    throw Error("upsert_batch: results span is shorter than updates");
  // Validate each first (as upsert() does); bad ones are reported, the rest applied in order.
  std::size_t start = 0;
  for (std::size_t i = 0; i <= updates.size(); ++i) {
    const bool bad = i < updates.size() && !valid(updates[i], impl_->cfg.namespaces);
    if (i == updates.size() || bad) {
      impl_->upsert_batch(updates.subspan(start, i - start), results.data() + start);
      if (bad) {
        bump(impl_->h->rejects);
        results[i] = ApplyResult{ApplyStatus::bad_input, 0, false};
      }
      start = i + 1;
    }
  }
}

ApplyResult Writer::erase(const KeyRef& key) {
  if (!check(key, impl_->cfg.namespaces).empty()) {
    bump(impl_->h->rejects);
    return ApplyResult{ApplyStatus::bad_input, 0, false};
  }
  return impl_->erase(key);
}

std::size_t Writer::invalidate_account(std::string_view account, std::optional<NamespaceId> ns) {
  return impl_->invalidate_account(account, ns);
}
std::size_t Writer::invalidate_namespace(NamespaceId ns) {
  if (ns >= impl_->cfg.namespaces.size()) return 0;
  return impl_->invalidate_namespace(ns);
}
std::size_t Writer::invalidate_matching(std::string_view glob) {
  if (glob.empty() || glob.size() > kJournalTextMax) {
    throw Error("glob pattern must be 1 to " + std::to_string(kJournalTextMax) +
                " characters, got " + std::to_string(glob.size()));
  }
  return impl_->invalidate_matching(glob);
}
std::size_t Writer::invalidate_all() {
  return impl_->invalidate_all();
}

BatchResult Writer::apply(std::span<const Op> ops) {
  BatchResult br;
  const auto& specs = impl_->cfg.namespaces;
  // 1. Check everything: a malformed op refuses the whole batch, nothing applied.
  for (std::size_t i = 0; i < ops.size(); ++i) {
    std::string err = std::visit(
        [&](const auto& op) -> std::string {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, Update>)
            return check(op, specs);
          else if constexpr (std::is_same_v<T, Erase>)
            return check(op.key, specs);
          else if constexpr (std::is_same_v<T, InvalidateAccount>) {
            if (auto r = validate_account(op.account); !r) return r.error();
            if (op.ns && *op.ns >= specs.size())
              return "namespace id " + std::to_string(*op.ns) + " is out of range";
            return {};
          } else if constexpr (std::is_same_v<T, InvalidateNamespace>) {
            return op.ns < specs.size()
                       ? std::string()
                       : "namespace id " + std::to_string(op.ns) + " is out of range";
          } else if constexpr (std::is_same_v<T, InvalidateMatching>) {
            return op.glob.empty() || op.glob.size() > kJournalTextMax
                       ? "glob pattern must be 1 to 256 characters"
                       : std::string();
          } else {
            return {};
          }
        },
        ops[i]);
    if (!err.empty()) {
      bump(impl_->h->rejects);
      br.error = "op " + std::to_string(i) + ": " + err + " (batch of " +
                 std::to_string(ops.size()) + " refused, nothing applied)";
      return br;
    }
  }
  // 2. Apply, announcing the batch with one change-sequence step.
  impl_->in_batch = true;
  br.results.reserve(ops.size());
  for (const Op& op : ops) {
    ApplyResult r;
    if (const auto* u = std::get_if<Update>(&op)) {
      r = impl_->upsert(*u);
    } else if (const auto* e = std::get_if<Erase>(&op)) {
      r = impl_->erase(e->key);
    } else if (const auto* a = std::get_if<InvalidateAccount>(&op)) {
      br.removed += impl_->invalidate_account(a->account, a->ns);
      r.status = ApplyStatus::erased;
    } else if (const auto* n = std::get_if<InvalidateNamespace>(&op)) {
      br.removed += impl_->invalidate_namespace(n->ns);
      r.status = ApplyStatus::erased;
    } else if (const auto* m = std::get_if<InvalidateMatching>(&op)) {
      br.removed += impl_->invalidate_matching(m->glob);
      r.status = ApplyStatus::erased;
    } else {
      br.removed += impl_->invalidate_all();
      r.status = ApplyStatus::erased;
    }
    br.results.push_back(r);
  }
  impl_->in_batch = false;
  impl_->changed();
  br.applied = true;
  return br;
}

void Writer::tick() {
  impl_->tick();
}

void Writer::heartbeat() {
  const std::int64_t t = impl_->now();
  impl_->h->heartbeat_ns.store(t, kRelaxed);
  impl_->last_heartbeat = t;
}

void Writer::close() {
  if (!impl_ || impl_->h == nullptr) return;
  Impl& w = *impl_;
  if (w.sync) {
    w.sync->stop();  // writes what is unsynced, for up to close_timeout
    w.sync.reset();
  }
  w.h->state.store(static_cast<std::uint32_t>(SegmentState::closed), std::memory_order_release);
  w.wake_readers(w.now());
  w.h = nullptr;
  w.mapping = Mapping();
  w.lock.release();
}

bool Writer::sync_redis(std::chrono::milliseconds timeout) {
  if (!impl_->sync) return true;
  return impl_->sync->flush(timeout);
}

void Writer::count_reject() {
  bump(impl_->h->rejects);
}

WriterStats Writer::stats() const {
  const SegmentHeader& h = *impl_->h;
  WriterStats s;
  s.live = h.live_count.load(kRelaxed);
  s.capacity = h.capacity;
  s.inserts = h.inserts.load(kRelaxed);
  s.updates = h.updates.load(kRelaxed);
  s.evictions = h.evictions.load(kRelaxed);
  s.expirations = h.expirations.load(kRelaxed);
  s.erases = h.erases.load(kRelaxed);
  s.invalidations = h.invalidations.load(kRelaxed);
  s.rejects = h.rejects.load(kRelaxed);
  s.index_rebuilds = h.index_rebuilds.load(kRelaxed);
  s.repairs = h.repairs.load(kRelaxed);
  s.tombstones = h.tombstones.load(kRelaxed);
  s.generation = h.generation;
  s.next_version = impl_->wa->next_version;
  s.reattached = impl_->reattached;
  s.segment_bytes = impl_->mapping.size();
  s.huge_page_bytes = impl_->huge_page_bytes;
  s.warm_loaded = impl_->warm.loaded;
  s.warm_beyond_capacity = impl_->warm.beyond_capacity;
  s.warm_skipped = impl_->warm.expired + impl_->warm.unknown_namespace + impl_->warm.malformed;
  s.redis_state = redis_state_name(h.redis_state.load(kRelaxed));
  s.redis_dirty = h.redis_dirty.load(kRelaxed);
  const std::int64_t oldest = h.redis_oldest_unsynced_ns.load(kRelaxed);
  s.redis_oldest_unsynced_age_ns =
      oldest > 0 ? std::max<std::int64_t>(0, realtime_ns() - oldest) : 0;
  s.redis_synced_version = h.redis_synced_version.load(kRelaxed);
  s.journal_pending = journal_pending(*impl_->journal);
  s.journal_overflows = impl_->journal->overflows.load(kRelaxed);
  return s;
}

const std::vector<NamespaceSpec>& Writer::namespaces() const noexcept {
  return impl_->cfg.namespaces;
}
const std::string& Writer::segment_name() const noexcept {
  return impl_->cfg.segment;
}

std::optional<Position> Writer::find(const KeyRef& key) const {
  if (!check(key, impl_->cfg.namespaces).empty()) return std::nullopt;
  const std::uint64_t hash = key_hash(key.ns, key.account, key.instrument);
  const std::uint32_t s = impl_->find(hash, key.ns, key.account, key.instrument);
  if (s == kNil) return std::nullopt;
  Position pos;
  decode(impl_->peek(s), kMaxFields, pos);
  return pos;
}

}  // namespace poscache
