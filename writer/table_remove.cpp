// The table's removals (evictions, expiry, erases, invalidations) and what re-attach and warm
// start rebuild: the index, the lists, removals a killed writer left unfinished.
#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/slot_codec.hpp"
#include "shm/values/key_text.hpp"
#include "writer/pending_changes.hpp"
#include "writer/table.hpp"
#include "writer/table_detail.hpp"

namespace poscache::detail {

using namespace shm;

// Removals go to Redis through the journal (writer/journal.hpp): recorded before they apply.
void Table::hand_off_removal(RemovalEvent&& e) {
  sync_->removal(std::move(e), last_now_);
}

void Table::remove(std::uint32_t s, Removal why, std::uint64_t version) {
  const SlotPayload& p = peek(s);  // read in place; not used once the slot is freed below
  const NamespaceId ns_of_removed = p.ns;
  // One key's removal is a ring record of its own; a pattern's removals are its one record.
  if (why != Removal::invalidation) {
    const ChangeKind kind = why == Removal::eviction     ? ChangeKind::evicted
                            : why == Removal::expiration ? ChangeKind::expired
                                                         : ChangeKind::erased;
    ring_.append(static_cast<std::uint8_t>(kind), p.ns, version ? version : p.version, last_now_,
                 {p.account, p.account_len}, {p.instrument, p.instrument_len});
  }
  if (syncs(p.ns) && (why == Removal::eviction || why == Removal::expiration)) {
    // A change Redis has not acknowledged would leave with the slot: hand a copy to the sync
    // thread. acquire pairs with the sync thread's release store after Redis replied.
    const std::uint64_t synced = load_acquire(&book_[s].synced_version);
    if (p.version > synced) hand_off_removal(spill_of(p));  // journaled before the slot is freed
  }
  IndexWriter iw(index_[load_relaxed(&h_->index_epoch) & 1], buckets_);
  const std::uint64_t pos = iw.find_slot(p.key_hash, s);
  if (pos < buckets_) add_tombstones(iw.remove_at(pos));  // XD1 (+XD3)
  rebuild_.removed(p.key_hash, s);  // and from a rebuild's copy, if its scan has passed s
  recency_.forget(s);
  account_unlink(s, p.account_hash);
  write_slot(s, free_slot_payload());  // XD2
  book_[s].next = wa_->free_head;  // synced_version stays: the next occupant's versions are higher
  wa_->free_head = s;
  live_removed(ns_of_removed);
  switch (why) {
    case Removal::eviction:
      bump(h_->counters.evictions);
      break;
    case Removal::expiration:
      bump(h_->counters.expirations);
      break;
    case Removal::erase:
      bump(h_->counters.erases);
      break;
    case Removal::invalidation:
      bump(h_->counters.invalidations);
      break;
  }
  maybe_rebuild();
}

// Redis may hold positions the segment no longer does (evicted): a removal goes to Redis
// whether or not the segment had the position, with a version of its own.
ApplyResult Table::erase(const KeyRef& k) {
  const std::uint32_t s =
      find(key_hash(k.ns, k.account, k.instrument), k.ns, k.account, k.instrument);
  const std::uint64_t v = removal_version();
  if (syncs(k.ns)) hand_off_removal(erase_of(k, v));
  ApplyResult r;
  if (s == kNil) {
    r.status = ApplyStatus::not_found;
    return r;
  }
  r.version = peek(s).version;
  remove(s, Removal::erase, v);
  r.status = ApplyStatus::erased;
  changed();
  return r;
}

// Removes many positions, rebuilding the index at most once at the end.
std::size_t Table::remove_all(const std::vector<std::uint32_t>& victims) {
  defer_rebuild_ = true;
  for (std::uint32_t s : victims) remove(s, Removal::invalidation);
  defer_rebuild_ = false;
  maybe_rebuild();
  if (!victims.empty() || ring_.enabled()) changed();
  return victims.size();
}

std::size_t Table::invalidate_account(std::string_view account, std::optional<NamespaceId> ns) {
  std::vector<std::uint32_t> victims;
  const AccountRef acct = accounts_.find(account_hash(account));
  if (acct.found) {
    for (std::uint32_t s = acct.head; s != kNil; s = links_[s]) {
      const SlotPayload& p = peek(s);
      if (std::string_view(p.account, p.account_len) == account && (!ns || p.ns == *ns))
        victims.push_back(s);
    }
  }
  const std::uint64_t v = removal_version();
  if (ns ? syncs(*ns) : sync_ != nullptr)
    hand_off_removal(pattern_of(RemovalEvent::Kind::account, v, ns, account));
  ring_.append(static_cast<std::uint8_t>(ChangeKind::invalidated_account),
               ns.value_or(kFreeNamespace), v, now(), account, {});
  return remove_all(victims);
}

std::size_t Table::invalidate_namespace(NamespaceId ns) {
  std::vector<std::uint32_t> victims;
  recency_.for_each([&](std::uint32_t s, std::uint16_t of) {
    if (of == ns) victims.push_back(s);
  });
  const std::uint64_t v = removal_version();
  if (syncs(ns)) hand_off_removal(pattern_of(RemovalEvent::Kind::ns, v, ns, {}));
  ring_.append(static_cast<std::uint8_t>(ChangeKind::invalidated_namespace), ns, v, now(), {}, {});
  return remove_all(victims);
}

std::size_t Table::invalidate_matching(std::string_view glob) {
  const std::string pattern(glob);
  std::vector<std::uint32_t> victims;
  std::string key;
  recency_.for_each([&](std::uint32_t s, std::uint16_t ns) {
    const SlotPayload& p = peek(s);
    if (key_matches(pattern.c_str(), key, namespace_name(ns), {p.account, p.account_len},
                    {p.instrument, p.instrument_len})) {
      victims.push_back(s);
    }
  });
  const std::uint64_t v = removal_version();
  if (sync_) hand_off_removal(pattern_of(RemovalEvent::Kind::glob, v, std::nullopt, glob));
  ring_.append(static_cast<std::uint8_t>(ChangeKind::invalidated_glob), kFreeNamespace, v, now(),
               glob, {});
  return remove_all(victims);
}

std::size_t Table::invalidate_all() {
  std::vector<std::uint32_t> victims;
  recency_.for_each([&](std::uint32_t s, std::uint16_t) { victims.push_back(s); });
  const std::uint64_t v = removal_version();
  if (sync_) hand_off_removal(pattern_of(RemovalEvent::Kind::all, v, std::nullopt, {}));
  ring_.append(static_cast<std::uint8_t>(ChangeKind::invalidated_all), kFreeNamespace, v, now(), {},
               {});
  return remove_all(victims);
}

// Removals are limited by `budget`, and the log entries passed on the way (entries of other
// namespaces, dead ones) by 16 times that: the apply loop stays responsive, and the search
// resumes where it stopped.
bool Table::expire(std::size_t budget) {
  const std::int64_t t = now();
  std::size_t pass_budget = 16 * budget;
  bool expired = false;
  defer_rebuild_ = true;
  for (std::uint32_t ns = 0; ns < h_->namespace_count && budget > 0; ++ns) {
    const std::int64_t ttl = h_->namespaces[ns].expire_after_ns;
    if (ttl <= 0) continue;
    while (budget > 0) {
      const std::uint32_t oldest = recency_.oldest_of(static_cast<std::uint16_t>(ns), pass_budget);
      if (oldest == RecencyLog::kNone || peek(oldest).updated_at_ns + ttl > t) break;
      remove(oldest, Removal::expiration);
      expired = true;
      --budget;
    }
  }
  defer_rebuild_ = false;
  maybe_rebuild();
  if (expired) changed();
  return expired;
}

// ---- rebuilds
// ------------------------------------------------------------------------------------
void Table::rebuild_index(bool dedupe) {
  rebuild_.cancel();  // this one overwrites the inactive copy a sliced rebuild was building
  const std::uint64_t e = load_relaxed(&h_->index_epoch);
  Bucket* target = index_[(e + 1) & 1];
  IndexWriter iw(target, buckets_);
  iw.clear();
  for (std::uint32_t s = 0; s < capacity_; ++s) {
    const SlotPayload& p = peek(s);
    if (p.ns == kFreeNamespace) continue;
    if (dedupe) {
      std::uint32_t other = kNil;
      probe(target, buckets_ - 1, capacity_, p.key_hash, [&](std::uint32_t o) {
        if (same_key(peek(o), p)) {
          other = o;
          return true;
        }
        return false;
      });
      if (other != kNil) {
        const std::uint32_t loser = peek(other).version < p.version ? other : s;
        write_slot(loser, free_slot_payload());
        bump(h_->counters.repairs);
        if (loser == s) continue;
        // `other` is in the new index pointing at a now-free slot: point it at s instead.
        const std::uint64_t pos = iw.find_slot(p.key_hash, other);
        store_relaxed(&target[pos], make_bucket(bucket_tag(p.key_hash), s));
        continue;
      }
    }
    iw.insert(p.key_hash, s);
  }
  store_release(&h_->index_epoch, e + 1);  // XB2: pairs with readers' XL1/XL3
  store_relaxed(&h_->counters.tombstones, 0);
  bump(h_->counters.index_rebuilds);
}

void Table::rebuild_lists(const std::function<void()>& tick) {
  auto progress = [&](std::size_t i) {
    if (tick && (i & 0xFFFF) == 0xFFFF) tick();
  };
  std::vector<std::tuple<std::int64_t, std::uint64_t, std::uint32_t>>
      order;  // updated_at, version, slot
  std::uint64_t max_version = 0;
  wa_->free_head = kNil;
  accounts_.clear();
  recency_.clear();
  for (auto s = static_cast<std::uint32_t>(capacity_); s-- > 0;) {
    progress(s);
    const SlotPayload& p = peek(s);
    book_[s].next = book_[s].account_prev = kNil;
    store_relaxed(&links_[s], kNil);
    if (p.ns == kFreeNamespace) {
      book_[s].next = wa_->free_head;
      book_[s].synced_version = 0;
      wa_->free_head = s;
      continue;
    }
    order.emplace_back(p.updated_at_ns, p.version, s);
    max_version = std::max(max_version, p.version);
  }
  std::sort(order.begin(), order.end());
  if (tick) tick();
  std::uint64_t per_ns[kMaxNamespaces] = {};
  std::size_t done = 0;
  for (const auto& [t, v, s] : order) {
    progress(done++);
    const SlotPayload& p = peek(s);
    // The account hash is derived from the text; a slot whose word disagrees (only a corrupt
    // segment has one) is corrected before it is linked by it.
    if (const std::uint64_t ah = account_hash({p.account, p.account_len}); p.account_hash != ah) {
      const auto word = static_cast<std::uint8_t>(kWordAccountHash);
      write_words(s, &word, &ah, 1);
      bump(h_->counters.repairs);
    }
    recency_.touch(s, p.ns);
    account_link(s, p.account_hash);
    if (p.ns < kMaxNamespaces) ++per_ns[p.ns];
  }
  store_relaxed(&h_->counters.live, order.size());
  for (std::size_t n = 0; n < kMaxNamespaces; ++n) store_relaxed(&h_->namespace_live[n], per_ns[n]);
  wa_->next_version = std::max(wa_->next_version, max_version + 1);
}

// The live positions removal `e` covers that are older than it.
std::vector<std::uint32_t> Table::covered_older(const RemovalEvent& e) const {
  using Kind = RemovalEvent::Kind;
  std::vector<std::uint32_t> victims;
  if (e.kind == Kind::spill) return victims;  // removes nothing
  auto consider = [&](std::uint32_t s) {
    const SlotPayload& p = peek(s);
    if (p.ns != kFreeNamespace && p.version < e.version && covers(e, namespace_name(p.ns), p))
      victims.push_back(s);
  };
  if (e.kind == Kind::erase) {  // one key: the index finds it
    if (const std::uint32_t s = find(e.payload); s != kNil) consider(s);
  } else if (e.kind == Kind::account) {  // one account: its list
    const AccountRef acct = accounts_.find(account_hash(e.text));
    for (std::uint32_t s = acct.found ? acct.head : kNil; s != kNil; s = links_[s]) {
      consider(s);
    }
  } else {  // a namespace, a glob, everything (rare): every slot
    for (std::uint32_t s = 0; s < capacity_; ++s) consider(s);
  }
  return victims;
}

std::size_t Table::finish_removal(const RemovalEvent& e) {
  if (e.kind == RemovalEvent::Kind::spill) return 0;  // the position was in its slot or gone
  return remove_all(covered_older(e));
}

std::size_t Table::apply_removal(const RemovalEvent& e) {
  using Kind = RemovalEvent::Kind;
  if (e.kind == Kind::spill) return 0;  // (a spill removes nothing)
  const std::vector<std::uint32_t> victims = covered_older(e);
  if (e.kind == Kind::erase) {  // a record of its own, as an erase here has
    if (victims.empty()) return 0;
    remove(victims.front(), Removal::erase, e.version);
    changed();
    return 1;
  }
  const auto ns = e.ns.value_or(kFreeNamespace);
  const ChangeKind kind = e.kind == Kind::account ? ChangeKind::invalidated_account
                          : e.kind == Kind::ns    ? ChangeKind::invalidated_namespace
                          : e.kind == Kind::glob  ? ChangeKind::invalidated_glob
                                                  : ChangeKind::invalidated_all;
  ring_.append(static_cast<std::uint8_t>(kind), ns, e.version, now(), e.text, {});
  return remove_all(victims);
}

bool Table::apply_synced(const SlotPayload& in, std::uint32_t* slot) {
  SlotPayload p = in;
  const std::string_view account(p.account, p.account_len);
  const std::string_view instrument(p.instrument, p.instrument_len);
  p.key_hash = key_hash(p.ns, account, instrument);
  p.account_hash = account_hash(account);
  if (const std::uint32_t s = find(p.key_hash, p.ns, account, instrument); s != kNil) {
    if (slot != nullptr) *slot = s;
    if (peek(s).version >= p.version) return false;  // this one or a newer one is here
    write_slot(s, p);                                // in place: readers never miss the key
    ring_.append(static_cast<std::uint8_t>(ChangeKind::updated), p.ns, p.version, p.updated_at_ns,
                 account, instrument);
    recency_.touch(s, p.ns);
    book_[s].synced_version = p.version;
    wa_->next_version = std::max(wa_->next_version, p.version + 1);
    bump(h_->counters.updates);
    changed();
    return true;
  }
  if (full()) remove(recency_.oldest(), Removal::eviction);
  const std::uint32_t s = insert_synced(p);
  if (slot != nullptr) *slot = s;
  ring_.append(static_cast<std::uint8_t>(ChangeKind::inserted), p.ns, p.version, p.updated_at_ns,
               account, instrument);
  bump(h_->counters.inserts);
  changed();
  return true;
}

std::uint32_t Table::insert_synced(const SlotPayload& in) {
  SlotPayload p = in;
  p.key_hash = key_hash(p.ns, {p.account, p.account_len}, {p.instrument, p.instrument_len});
  p.account_hash = account_hash({p.account, p.account_len});
  const std::uint32_t s = wa_->free_head;
  wa_->free_head = book_[s].next;
  write_slot(s, p);
  if (IndexWriter(index_[load_relaxed(&h_->index_epoch) & 1], buckets_).insert(p.key_hash, s))
    add_tombstones(-1);
  rebuild_.inserted(p.key_hash, s);
  recency_.touch(s, p.ns);
  account_link(s, p.account_hash);
  book_[s].synced_version = p.version;  // Redis holds exactly this (no sync thread runs yet)
  live_added(p.ns);
  wa_->next_version = std::max(wa_->next_version, p.version + 1);
  if (!in_batch_) close_accounts();  // AW4 (a load announces itself once, at its end)
  return s;
}

}  // namespace poscache::detail
