// The table's slot writes, lookups and upserts. Removals, rebuilds and expiry: table_remove.cpp.
#include "writer/table.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/segment.hpp"
#include "shm/seqlock.hpp"
#include "shm/slot_codec.hpp"
#include "writer/fault_points.hpp"
#include "writer/pending_changes.hpp"
#include "writer/table_detail.hpp"

namespace poscache::detail {

using namespace shm;

void Table::bind(std::byte* base, const Geometry& g) {
  h_ = reinterpret_cast<SegmentHeader*>(base);
  slots_ = reinterpret_cast<Slot*>(base + g.slots_offset);
  index_[0] = reinterpret_cast<Bucket*>(base + g.index_offset[0]);
  index_[1] = reinterpret_cast<Bucket*>(base + g.index_offset[1]);
  wa_ = reinterpret_cast<WriterArea*>(base + g.writer_offset);
  book_ = reinterpret_cast<SlotBook*>(base + g.book_offset);
  links_ = reinterpret_cast<std::uint32_t*>(base + g.links_offset);
  capacity_ = g.capacity;
  buckets_ = g.index_buckets;
  // Rebuild when tombstones pass a quarter of the buckets: live keys are at most half, so
  // occupied + tombstones stays under 3/4 and a miss probes a handful of buckets.
  tombstone_limit_ = buckets_ / 4;
  // A sliced rebuild begins early enough to finish before the limit: one tombstone at most per
  // removal, one slice per removal (twice the slices, for margin; never before half the limit).
  rebuild_.bind(index_, buckets_, capacity_);
  rebuild_start_ = tombstone_limit_ - std::min(tombstone_limit_ / 2, 2 * rebuild_.steps());
  accounts_ =
      AccountIndexWriter(reinterpret_cast<AccountEntry*>(base + g.accounts_offset), g.index_buckets,
                         reinterpret_cast<std::uint64_t*>(base + g.stripes_offset),
                         g.account_stripes, &h_->accounts_epoch);
  open_stripes_.reserve(64);
  ring_cells_ = reinterpret_cast<ChangeCell*>(base + g.ring_offset);
  ring_count_ = g.ring_cells;
  recency_ = RecencyLog(capacity_);
  for (std::uint32_t ns = 0; ns < h_->namespace_count && ns < kMaxNamespaces; ++ns) {
    const NamespaceSpec spec = spec_of(h_->namespaces[ns]);
    FieldSlots& fs = slots_of_[ns];
    for (std::size_t f = 0; f < spec.fields.size(); ++f) {
      fs.first[f] = static_cast<std::uint8_t>(field_slot(spec.fields, f));
      fs.count[f] = static_cast<std::uint8_t>(slots_of(spec.fields[f]));
    }
    fs.used = static_cast<std::uint32_t>(value_slots(spec.fields));
  }
  std::vector<std::uint16_t> expiring;
  for (std::uint32_t ns = 0; ns < h_->namespace_count; ++ns) {
    if (h_->namespaces[ns].expire_after_ns > 0) expiring.push_back(static_cast<std::uint16_t>(ns));
  }
  recency_.set_expiring(expiring);
}

void Table::set_change_ring(bool on) noexcept {
  ring_ = on ? ChangeRingWriter(ring_cells_, ring_count_, &h_->ring_head) : ChangeRingWriter();
  store_relaxed(&h_->ring_cells, on ? ring_count_ : 0);
}

void Table::record_restart() noexcept {
  ring_.append(kRestartRecord, kFreeNamespace, wa_->next_version, now(), {}, {});
  ring_.publish();
}

// ---- slot writes ----------------------------------------------------------------------------
void Table::write_words(std::uint32_t s, const std::uint8_t* idx, const std::uint64_t* val,
                        std::size_t n) noexcept {
  Slot& slot = slots_[s];
  UndoRecord& undo = wa_->undo;
  // AW1-AW2: a change to a position is a change to its account (a free slot has none; an insert
  // opens its account in account_link).
  if (reinterpret_cast<const SlotPayload*>(slot.payload)->ns != kFreeNamespace)
    open_account(slot.payload[kWordAccountHash]);
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
  undo.seq_before = load_relaxed(&slot.seq);
  POSCACHE_FAULT_POINT(undo_saved);  // test builds only (writer/fault_points.hpp)
  // The record must be complete before it is armed, and armed before the slot turns odd, in
  // the order a crash would observe: program order, kept by the compiler (the CPU retires a
  // killed process's stores before the next writer can map the segment).
  std::atomic_signal_fence(std::memory_order_seq_cst);
  store_release(&undo.slot_plus_one, s + 1u);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  POSCACHE_FAULT_POINT(undo_armed);
  const std::uint64_t seq = begin_write(slot);  // SW1, SW2
  POSCACHE_FAULT_POINT(after_w1);
  for (std::size_t j = 0; j < k; ++j) {
    if (j == k / 2) POSCACHE_FAULT_POINT(mid_w3);
    store_word(slot, undo.word[j], changed_val[j]);  // SW3
  }
  publish(slot, seq);  // SW4
  POSCACHE_FAULT_POINT(after_w4);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  store_relaxed(&undo.slot_plus_one, 0);
  POSCACHE_FAULT_POINT(undo_disarmed);
}

// A whole new payload (inserts, frees): every word is a candidate, only changed ones stored.
void Table::write_slot(std::uint32_t s, const SlotPayload& next) noexcept {
  static constexpr auto kAll = [] {
    std::array<std::uint8_t, kPayloadWords> a{};
    for (std::size_t i = 0; i < kPayloadWords; ++i) a[i] = static_cast<std::uint8_t>(i);
    return a;
  }();
  write_words(s, kAll.data(), reinterpret_cast<const std::uint64_t*>(&next), kPayloadWords);
}

// ---- account lists (writer area) -------------------------------------------------------------
// The links readers follow (links_, the next slot) are atomic stores; account_prev is the
// writer's own. Both run with the account's stripe open (AW3).
void Table::account_link(std::uint32_t s, std::uint64_t ah) {
  open_account(ah);
  SlotBook& b = book_[s];
  const AccountRef old = accounts_.find(ah);
  b.account_prev = kNil;
  store_relaxed(&links_[s], old.found ? old.head : kNil);
  if (old.found && old.head != kNil) book_[old.head].account_prev = s;
  accounts_.set(ah, s, old.count + 1);
}

void Table::account_unlink(std::uint32_t s, std::uint64_t ah) {
  open_account(ah);
  SlotBook& b = book_[s];
  const AccountRef cur = accounts_.find(ah);
  const std::uint32_t next = links_[s];
  if (b.account_prev != kNil) {
    store_relaxed(&links_[b.account_prev], next);
    accounts_.set(ah, cur.head, cur.count - 1);
  } else {
    accounts_.set(ah, next, cur.count - 1);  // count 0: the entry goes (AE1-AE2)
  }
  if (next != kNil) book_[next].account_prev = b.account_prev;
  b.account_prev = kNil;
  store_relaxed(&links_[s], kNil);
}

// ---- index and lookup --------------------------------------------------------------------------
std::uint32_t Table::find(std::uint64_t hash, NamespaceId ns, std::string_view account,
                          std::string_view instrument) const noexcept {
  const Bucket* idx = index_[load_relaxed(&h_->index_epoch) & 1];
  std::uint32_t found = kNil;
  probe(idx, buckets_ - 1, capacity_, hash, [&](std::uint32_t s) {
    if (same_key(peek(s), hash, ns, account, instrument)) {
      found = s;
      return true;
    }
    return false;
  });
  return found;
}

std::uint32_t Table::find(const SlotPayload& k) const noexcept {
  const std::string_view account(k.account, k.account_len);
  const std::string_view instrument(k.instrument, k.instrument_len);
  return find(key_hash(k.ns, account, instrument), k.ns, account, instrument);
}

void Table::add_tombstones(std::int64_t delta) noexcept {  // a header counter; one writer
  store_relaxed(&h_->counters.tombstones,
                load_relaxed(&h_->counters.tombstones) + static_cast<std::uint64_t>(delta));
}

void Table::live_added(NamespaceId ns) noexcept {
  store_relaxed(&h_->counters.live, load_relaxed(&h_->counters.live) + 1);
  store_relaxed(&h_->namespace_live[ns], load_relaxed(&h_->namespace_live[ns]) + 1);
}

void Table::live_removed(NamespaceId ns) noexcept {
  store_relaxed(&h_->counters.live, load_relaxed(&h_->counters.live) - 1);
  store_relaxed(&h_->namespace_live[ns], load_relaxed(&h_->namespace_live[ns]) - 1);
}

// A slice of the index rebuild per removal once tombstones pass rebuild_start_; the rest at once
// if they pass the hard limit (a bulk removal). XB2 once the inactive copy is complete.
void Table::maybe_rebuild() {
  if (defer_rebuild_) return;
  const std::uint64_t tombstones = load_relaxed(&h_->counters.tombstones);
  if (!rebuild_.active()) {
    if (tombstones <= rebuild_start_) return;
    rebuild_.start(load_relaxed(&h_->index_epoch));
  }
  const std::int64_t t0 = clock_.now();
  const auto live_hash = [this](std::uint32_t s, std::uint64_t* hash) {
    const SlotPayload& p = peek(s);
    *hash = p.key_hash;
    return p.ns != kFreeNamespace;
  };
  bool done = rebuild_.step(live_hash);
  std::uint64_t slices = 1;
  for (; !done && tombstones > tombstone_limit_; ++slices) done = rebuild_.step(live_hash);
  if (done) {
    const std::uint64_t e = load_relaxed(&h_->index_epoch);
    store_release(&h_->index_epoch, e + 1);  // XB2: pairs with readers' XL1/XL3
    store_relaxed(&h_->counters.tombstones, rebuild_.tombstones());
    bump(h_->counters.index_rebuilds);
  }
  rebuild_slices_.store(rebuild_slices_.load(std::memory_order_relaxed) + slices,
                        std::memory_order_relaxed);
  const std::int64_t took = clock_.now() - t0;
  if (took > longest_index_step_ns_.load(std::memory_order_relaxed))
    longest_index_step_ns_.store(took, std::memory_order_relaxed);
  const auto& bounds = WriterStats::kIndexStepBoundsNs;
  const std::size_t b = static_cast<std::size_t>(
      std::lower_bound(bounds.begin(), bounds.end(), took) - bounds.begin());
  auto& n = index_step_counts_[b];  // one writer: a relaxed load and store, no locked add
  n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// ---- change notification -----------------------------------------------------------------------
void Table::changed() noexcept {
  if (in_batch_) return;  // a batch publishes once at its end
  close_accounts();       // AW4: the change is complete
  ring_.publish();        // CW5: its records, now that readers can see what they announce
  // release: a reader that sees the new sequence (acquire) sees the change it announces
  store_release(&h_->change_seq, load_relaxed(&h_->change_seq) + 1);
  wake_pending_ = true;
}

void Table::wake_readers(std::int64_t t) noexcept {
  store_release(&h_->change_futex, load_relaxed(&h_->change_futex) + 1);
  futex_wake_all(&h_->change_futex);
  wake_pending_ = false;
  last_wake_ = t;
}

// ---- upserts
// -------------------------------------------------------------------------------------
ApplyResult Table::upsert(const Update& u) {
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
void Table::upsert_batch(std::span<const Update> us, ApplyResult* out,
                         const std::uint64_t* claimed) {
  constexpr std::size_t kChunk = 256, kDistance = 16;
  std::uint64_t hashes[kChunk];
  std::uint32_t hint[kChunk];
  std::uint32_t victim[kChunk];
  const std::uint64_t mask = buckets_ - 1;
  for (std::size_t base = 0; base < us.size(); base += kChunk) {
    const std::size_t n = std::min(kChunk, us.size() - base);
    const Bucket* idx = index_[load_relaxed(&h_->index_epoch) & 1];
    const std::int64_t t = now();  // one clock read per chunk: its updates share updated_at
    std::uint64_t lru_pos = recency_.front_position();
    std::uint32_t cursor =
        wa_->free_head == kNil ? recency_.predict(lru_pos, 64) : RecencyLog::kNone;
    for (std::size_t i = 0; i < n + 3 * kDistance; ++i) {
      if (i < n) {  // A
        const Update& u = us[base + i];
        hashes[i] = claimed != nullptr ? claimed[base + i]
                                       : key_hash(u.ns, u.account_view(), u.instrument_view());
        __builtin_prefetch(&idx[hashes[i] & mask]);
      }
      if (i >= kDistance && i - kDistance < n) {  // B
        const std::size_t j = i - kDistance;
        const std::uint64_t b = load_relaxed(&idx[hashes[j] & mask]);
        const std::uint32_t ref = bucket_ref(b);
        const bool named = b != kEmptyBucket && ref != kTombstoneRef && ref - 1u < capacity_ &&
                           bucket_tag(b) == bucket_tag(hashes[j]);
        hint[j] = named ? ref - 1u : kNil;
        victim[j] = kNil;
        const std::uint32_t target = named ? hint[j] : cursor;
        if (!named && cursor < capacity_) {
          victim[j] = cursor;
          cursor = recency_.predict(lru_pos, 64);
        }
        if (target != kNil && target < capacity_) {
          // An update touches the meta and key lines and its fields' lines; a victim is read
          // whole (its payload is cleared).
          const auto* line = reinterpret_cast<const char*>(&slots_[target]);
          const std::size_t end =
              named ? 8 + 8 * (kWordValues + 2 * slots_of_[us[base + j].ns].used) : sizeof(Slot);
          for (std::size_t off = 0; off < end; off += kCacheLine) __builtin_prefetch(line + off, 1);
          __builtin_prefetch(recency_.stamp_address(target), 1);
          if (!named || sync_) __builtin_prefetch(&book_[target], 1);  // account links; sync mark
          if (!named) __builtin_prefetch(&links_[target], 1);
        }
      }
      if (i >= 2 * kDistance && i - 2 * kDistance < n) {  // C
        const std::size_t j = i - 2 * kDistance;
        const std::uint32_t target = victim[j];
        if (target != kNil && target < capacity_) {
          const SlotBook& bk = book_[target];
          const SlotPayload& vp = peek(target);
          __builtin_prefetch(&idx[vp.key_hash & mask], 1);
          if (vp.account_len <= kMaxAccountLen) accounts_.prefetch(vp.account_hash);
          // Unlinking it writes the previous slot's link and the next slot's account_prev.
          if (bk.account_prev < capacity_) __builtin_prefetch(&links_[bk.account_prev], 1);
          if (links_[target] < capacity_) __builtin_prefetch(&book_[links_[target]], 1);
        } else if (hint[j] != kNil && hint[j] < capacity_) {
          // An update: its account's stripe, named by the slot's first line (fetched in B).
          __builtin_prefetch(accounts_.stripe_of(slots_[hint[j]].payload[kWordAccountHash]), 1);
        }
      }
      if (i >= 3 * kDistance) {  // D
        const std::size_t j = i - 3 * kDistance;
        out[base + j] = upsert_hashed(us[base + j], hashes[j], t, claimed != nullptr);
      }
    }
  }
}

ApplyResult Table::upsert_hashed(const Update& u, std::uint64_t hash, std::int64_t t,
                                 bool claimed) {
  const std::string_view account = u.account_view();
  const std::string_view instrument = u.instrument_view();
  const std::uint32_t nfields = h_->namespaces[u.ns].field_count;
  ApplyResult r;
  std::uint32_t s = find(hash, u.ns, account, instrument);
  // A claimed hash is proven before anything is written. Found: same_key() matched the claim
  // against the hash stored with the key (computed by this writer when it inserted the key, whose
  // characters it checked then), so the claim is the key's hash. Not found: a new key, or a
  // false claim for a stored one; either way the key is checked and hashed here as upsert()
  // would, and a claim that differs is refused.
  if (claimed && s == kNil &&
      (!valid_account(account) || !valid_instrument(instrument) ||
       key_hash(u.ns, account, instrument) != hash)) {
    bump(h_->counters.rejects);
    r.status = ApplyStatus::bad_input;
    return r;
  }
  if (s != kNil) {
    // An update: only the words it changes (meta, version, source_seq, updated_at, the given
    // fields) are read, saved for undo and stored; the key and other fields stay untouched.
    const std::uint64_t* cur = slots_[s].payload;
    if (u.source_seq != 0 && cur[kWordSourceSeq] != 0 && u.source_seq <= cur[kWordSourceSeq]) {
      bump(h_->counters.rejects);
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
    // A replace that unsets a field Redis may hold: the sync removes it (HDEL).
    const bool dropped = (meta_fields_set(cur[kWordMeta]) & ~fields_set) != 0;
    put(kWordMeta, meta_with_fields_set(cur[kWordMeta], fields_set));
    r.version = wa_->next_version++;
    put(kWordVersion, r.version);
    if (u.source_seq != 0) put(kWordSourceSeq, u.source_seq);
    put(kWordUpdatedAt, static_cast<std::uint64_t>(t));
    const FieldSlots& fs = slots_of_[u.ns];
    for (std::uint32_t f = 0; f < nfields; ++f) {
      const bool given = ((u.fields_mask >> f) & 1u) != 0;
      if (!given && u.mode != UpdateMode::replace) continue;
      for (std::uint32_t slot = fs.first[f]; slot < fs.first[f] + fs.count[f]; ++slot) {
        const auto v = given ? static_cast<unsigned __int128>(u.values[slot]) : 0;
        put(kWordValues + 2 * slot, static_cast<std::uint64_t>(v));
        put(kWordValues + 2 * slot + 1, static_cast<std::uint64_t>(v >> 64));
      }
    }
    write_words(s, idx, val, n);
    ring_.append(static_cast<std::uint8_t>(ChangeKind::updated), u.ns, r.version, t, account,
                 instrument);
    if (syncs(u.ns)) sync_->mark(s, t, dropped ? kSlotFieldsDropped : 0);
    recency_.touch(s, u.ns);
    bump(h_->counters.updates);
    r.status = ApplyStatus::updated;
    changed();
    return r;
  }
  // An insert: a free slot (evicting the least recently updated position if none is free).
  if (wa_->free_head == kNil) {
    // The least recently updated position of all namespaces: the first live entry of the
    // recency log (in apply order, which is (updated_at, version) order: see rebuild_lists).
    remove(recency_.oldest(), Removal::eviction);
    r.evicted = true;
  }
  s = wa_->free_head;
  wa_->free_head = book_[s].next;
  SlotPayload p{};
  p.key_hash = hash;
  p.ns = u.ns;
  p.account_len = u.account_len;
  p.instrument_len = u.instrument_len;
  std::memcpy(p.account, u.account, sizeof p.account);
  std::memcpy(p.instrument, u.instrument, sizeof p.instrument);
  const FieldSlots& fs = slots_of_[u.ns];
  for (std::uint32_t f = 0; f < nfields; ++f) {
    if (((u.fields_mask >> f) & 1u) == 0) continue;
    for (std::uint32_t slot = fs.first[f]; slot < fs.first[f] + fs.count[f]; ++slot)
      set_field_value(p, slot, u.values[slot]);
  }
  p.fields_set = u.fields_mask;
  p.version = wa_->next_version++;
  p.source_seq = u.source_seq;
  p.created_at_ns = t;
  p.updated_at_ns = t;
  p.account_hash = account_hash(account);
  write_slot(s, p);
  // XI1 after the slot's publish: a reader that finds the bucket finds the key.
  if (IndexWriter(index_[load_relaxed(&h_->index_epoch) & 1], buckets_).insert(hash, s))
    add_tombstones(-1);
  rebuild_.inserted(hash, s);  // and into a rebuild's copy, if its scan has passed s
  recency_.touch(s, u.ns);
  account_link(s, p.account_hash);
  ring_.append(static_cast<std::uint8_t>(ChangeKind::inserted), u.ns, p.version, t, account,
               instrument);
  if (syncs(u.ns)) sync_->mark(s, t, kSlotNewKey);
  live_added(u.ns);
  bump(h_->counters.inserts);
  r.status = ApplyStatus::inserted;
  r.version = p.version;
  changed();
  return r;
}

std::size_t Table::repair_torn_slots() noexcept {
  std::size_t repaired = 0;
  const std::uint64_t armed = load_acquire(&wa_->undo.slot_plus_one);
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    Slot& slot = slots_[s];
    const std::uint64_t seq = load_relaxed(&slot.seq);
    if ((seq & 1) == 0) continue;
    const UndoRecord& undo = wa_->undo;
    if (armed == s + 1u && undo.seq_before + 1 == seq && undo.count <= kPayloadWords) {
      // Put back the words the cut write had changed; the others it never touched.
      for (std::size_t k = 0; k < undo.count; ++k) {
        if (undo.word[k] < kPayloadWords) store_word(slot, undo.word[k], undo.old[k]);
      }
    } else {  // no record for it: corrupt; drop the position rather than serve half of it
      const SlotPayload freed = free_slot_payload();
      std::uint64_t words[kPayloadWords];
      std::memcpy(words, &freed, sizeof words);
      for (std::size_t i = 0; i < kPayloadWords; ++i) store_word(slot, i, words[i]);
    }
    store_release(&slot.seq, seq + 1);  // even again, != the pre-write seq
    ++repaired;
  }
  store_relaxed(&wa_->undo.slot_plus_one, 0);
  return repaired;
}

std::size_t Table::drop_unknown_namespaces() noexcept {
  std::size_t dropped = 0;
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    const std::uint16_t ns = peek(s).ns;
    if (ns != kFreeNamespace && ns >= h_->namespace_count) {
      write_slot(s, free_slot_payload());
      ++dropped;
    }
  }
  return dropped;
}

}  // namespace poscache::detail
