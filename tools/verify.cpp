#include "tools/verify.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "shm/accounts.hpp"
#include "shm/change_ring.hpp"
#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/layout.hpp"
#include "shm/seqlock.hpp"
#include "values/key_text.hpp"

namespace poscache::tools {

using namespace shm;

namespace {

std::string slot_name(std::uint64_t s) {
  return "slot " + std::to_string(s);
}

VerifyReport one_pass(const Reader& reader) {
  VerifyReport r;
  const auto* base = static_cast<const std::byte*>(reader.mapping_base());
  const auto& h = *reinterpret_cast<const SegmentHeader*>(base);
  const auto* slots = reinterpret_cast<const Slot*>(base + h.slots_offset);
  const std::uint64_t epoch = load_acquire(&h.index_epoch);
  const auto* index = reinterpret_cast<const Bucket*>(base + h.index_offset[epoch & 1]);
  const std::uint64_t mask = h.index_buckets - 1;
  const auto& infos = reader.namespaces();

  // The account stripes and epoch as this pass begins (for the account index's checks below).
  const Geometry ga = geometry_for(h.capacity);
  std::vector<std::uint64_t> stripes_before(ga.account_stripes);
  {
    const auto* st = reinterpret_cast<const std::uint64_t*>(base + ga.stripes_offset);
    for (std::uint64_t i = 0; i < ga.account_stripes; ++i) stripes_before[i] = load_acquire(&st[i]);
  }
  const std::uint64_t epoch_before = load_acquire(&h.accounts_epoch);

  // Slots: each live one is well formed and reachable through the index.
  std::vector<std::uint64_t> hash_of(h.capacity, 0);
  std::vector<std::uint64_t> account_of(h.capacity, 0);  // account_key of each live slot
  std::vector<bool> live(h.capacity, false);
  std::vector<std::uint64_t> live_per_ns(infos.size(), 0);
  std::set<std::string> keys;
  std::uint64_t words[kPayloadWords];
  for (std::uint64_t s = 0; s < h.capacity; ++s) {
    ++r.slots_checked;
    if (!read_bounded(slots[s], words, kPayloadWords)) {
      r.problems.push_back(slot_name(s) + ": stuck mid-write (odd sequence " +
                           std::to_string(load_relaxed(&slots[s].seq)) + ")");
      continue;
    }
    SlotPayload p;
    std::memcpy(&p, words, sizeof p);
    if (p.ns == kFreeNamespace) continue;
    ++r.live_slots;
    if (p.ns >= infos.size()) {
      r.problems.push_back(slot_name(s) + ": namespace id " + std::to_string(p.ns) +
                           " is not in the header");
      continue;
    }
    ++live_per_ns[p.ns];
    const std::string_view account(p.account, std::min<std::size_t>(p.account_len, kMaxAccountLen));
    const std::string_view instrument(p.instrument,
                                      std::min<std::size_t>(p.instrument_len, kMaxInstrumentLen));
    std::string key;
    detail::key_text(key, infos[p.ns].name, account, instrument);
    if (auto ok = validate_account(account); !ok)
      r.problems.push_back(slot_name(s) + ": " + ok.error());
    if (auto ok = validate_instrument(instrument); !ok)
      r.problems.push_back(slot_name(s) + ": " + ok.error());
    if (p.account_len > kMaxAccountLen || p.instrument_len > kMaxInstrumentLen) continue;
    const std::uint64_t hash = key_hash(p.ns, account, instrument);
    if (hash != p.key_hash)
      r.problems.push_back(slot_name(s) + " (" + key + "): stored hash does not match its key");
    if (account_hash(account) != p.account_hash)
      r.problems.push_back(slot_name(s) + " (" + key +
                           "): stored account hash does not match its account");
    account_of[s] = account_key(p.account_hash);
    const std::size_t nf = infos[p.ns].fields.size();
    if (nf < 32 && (p.fields_set >> nf) != 0)
      r.problems.push_back(slot_name(s) + " (" + key +
                           "): fields_set has bits beyond the schema's " + std::to_string(nf) +
                           " fields");
    if (p.updated_at_ns < p.created_at_ns)
      r.problems.push_back(slot_name(s) + " (" + key + "): updated_at before created_at");
    if (!keys.insert(key).second)
      r.problems.push_back(slot_name(s) + " (" + key + "): the key is held by another slot too");
    const bool found =
        probe(index, mask, h.capacity, hash, [&](std::uint32_t o) { return o == s; });
    if (!found)
      r.problems.push_back(slot_name(s) + " (" + key +
                           "): not reachable through the index (a reader would miss it)");
    hash_of[s] = hash;
    live[s] = true;
  }
  // Buckets: each points at a live slot with a matching tag, and no slot has two buckets (a
  // remove would tombstone one and leave the other pointing at whatever the slot holds next).
  std::vector<std::uint64_t> bucket_of(h.capacity, ~std::uint64_t{0});
  for (std::uint64_t i = 0; i <= mask; ++i) {
    ++r.buckets_checked;
    const std::uint64_t b = load_acquire(&index[i]);
    if (b == kEmptyBucket) continue;
    const std::uint32_t ref = bucket_ref(b);
    if (ref == kTombstoneRef) {
      ++r.tombstones;
      continue;
    }
    const std::uint64_t s = ref - 1u;
    if (s >= h.capacity) {
      r.problems.push_back("bucket " + std::to_string(i) + ": points at slot " + std::to_string(s) +
                           " beyond capacity");
    } else if (!live[s]) {
      r.problems.push_back("bucket " + std::to_string(i) + ": points at free " + slot_name(s));
    } else if (bucket_tag(hash_of[s]) != bucket_tag(b)) {
      r.problems.push_back("bucket " + std::to_string(i) + ": tag does not match " + slot_name(s) +
                           "'s hash");
    } else if (bucket_of[s] != ~std::uint64_t{0}) {
      r.problems.push_back("bucket " + std::to_string(i) + ": points at " + slot_name(s) +
                           ", as bucket " + std::to_string(bucket_of[s]) +
                           " does (one slot, two buckets)");
    } else {
      bucket_of[s] = i;
    }
  }
  // The account index (shm/accounts.hpp): each entry is found from its home, its list holds
  // exactly `count` live slots of its account, and every live slot is in its account's list.
  // Beside a running writer an account that changed during this pass (its stripe moved since
  // the pass began, or is odd) is not judged, nor is the index if entries moved (the epoch):
  // the slots were read before the lists, and a list walked while it changes may end anywhere.
  const auto* entries = reinterpret_cast<const AccountEntry*>(base + ga.accounts_offset);
  const auto* links = reinterpret_cast<const std::uint32_t*>(base + ga.links_offset);
  const auto* stripes = reinterpret_cast<const std::uint64_t*>(base + ga.stripes_offset);
  auto in_flux = [&](std::uint64_t key) {
    const std::uint64_t i = key & (ga.account_stripes - 1);
    return (stripes_before[i] & 1) != 0 || load_acquire(&stripes[i]) != stripes_before[i];
  };
  std::vector<std::string> index_problems;
  std::set<std::uint64_t> changing;  // account keys in flux during this pass
  std::vector<bool> listed(h.capacity, false);
  for (std::uint64_t i = 0; i <= mask; ++i) {
    const std::uint64_t key = load_relaxed(&entries[i].key);
    if (key == 0) continue;
    const std::string entry = "account entry " + std::to_string(i);
    std::vector<std::string> found_wrong;
    const AccountRef found = find_account(entries, mask, key);
    if (!found.found || found.head != load_relaxed(&entries[i].head))
      found_wrong.push_back(entry + ": not found from its home (a snapshot would miss it)");
    const std::uint32_t count = load_relaxed(&entries[i].count);
    std::uint32_t s = load_relaxed(&entries[i].head);
    std::uint32_t walked = 0;
    for (; s != kNil && walked <= count; s = load_relaxed(&links[s]), ++walked) {
      if (s >= h.capacity || !live[s] || account_of[s] != key || listed[s]) {
        found_wrong.push_back(entry + ": its list reaches " +
                              (s >= h.capacity ? "slot " + std::to_string(s) + " beyond capacity"
                               : !live[s]      ? "free " + slot_name(s)
                               : listed[s]     ? slot_name(s) + " a second time"
                                               : slot_name(s) + " of another account"));
        break;
      }
      listed[s] = true;
    }
    if (walked != count)
      found_wrong.push_back(entry + ": counts " + std::to_string(count) + " positions, its list " +
                            (walked > count ? "is longer" : "holds " + std::to_string(walked)));
    if (in_flux(key)) {
      changing.insert(key);
    } else {
      index_problems.insert(index_problems.end(), found_wrong.begin(), found_wrong.end());
    }
  }
  for (std::uint64_t s = 0; s < h.capacity; ++s) {
    if (live[s] && !listed[s] && !changing.count(account_of[s]) && !in_flux(account_of[s])) {
      index_problems.push_back(slot_name(s) + ": in no account's list (a snapshot would miss it)");
      break;
    }
  }
  const std::uint64_t epoch_after = load_acquire(&h.accounts_epoch);
  if ((epoch_before & 1) == 0 && epoch_after == epoch_before) {
    r.problems.insert(r.problems.end(), index_problems.begin(), index_problems.end());
  }
  const std::uint64_t counted = load_relaxed(&h.counters.live);
  if (counted != r.live_slots) {
    r.problems.push_back("header counts " + std::to_string(counted) +
                         " live positions, slots hold " + std::to_string(r.live_slots));
  }
  for (std::size_t n = 0; n < infos.size(); ++n) {
    const std::uint64_t ns_counted = load_relaxed(&h.namespace_live[n]);
    if (ns_counted != live_per_ns[n]) {
      r.problems.push_back("header counts " + std::to_string(ns_counted) + " live positions in " +
                           infos[n].name + ", slots hold " + std::to_string(live_per_ns[n]));
    }
  }
  // The journal (shm/layout.hpp): tail first, then head; both only grow, so head >= tail and at
  // most `entries` apart in a sound journal, whatever the writer does meanwhile.
  const Geometry g = geometry_for(h.capacity);
  const auto* j = reinterpret_cast<const JournalHeader*>(base + g.journal_offset);
  const std::uint64_t tail = load_acquire(&j->tail);
  const std::uint64_t head = load_acquire(&j->head);
  if (head < tail) {
    r.problems.push_back("journal: head " + std::to_string(head) + " is behind tail " +
                         std::to_string(tail));
  } else if (head - tail > g.journal_entries) {
    r.problems.push_back("journal: " + std::to_string(head - tail) +
                         " pending entries exceed its " + std::to_string(g.journal_entries));
  }
  // The change ring (shm/change_ring.hpp): every cell below the head holds the position the head
  // says was written there, or a later one of the same cell (the writer went on meanwhile), or is
  // being written. A cell holding another cell's position, or an older one, is damage.
  if (load_relaxed(&h.ring_cells) != 0) {
    const auto* ring = reinterpret_cast<const ChangeCell*>(base + g.ring_offset);
    const std::uint64_t ring_head = load_acquire(&h.ring_head);
    const std::uint64_t from = ring_head > g.ring_cells ? ring_head - g.ring_cells : 0;
    std::uint64_t bad = 0, first_bad = 0, first_seq = 0;
    for (std::uint64_t p = from; p < ring_head; ++p) {
      const std::uint64_t seq = load_acquire(&ring[p & (g.ring_cells - 1)].seq);
      if (seq == kCellWriting) continue;
      if (seq == 0 || seq - 1 < p || ((seq - 1 - p) & (g.ring_cells - 1)) != 0) {
        if (bad++ == 0) first_bad = p, first_seq = seq;
      }
    }
    if (bad > 0) {
      r.problems.push_back(
          "change ring: " + std::to_string(bad) +
          " cells below the head do not hold their position (the first: " + "position " +
          std::to_string(first_bad) + " holds sequence " + std::to_string(first_seq) + ")");
    }
  }
  return r;
}

}  // namespace

VerifyReport verify(const Reader& reader) {
  VerifyReport first = one_pass(reader);
  if (first.problems.empty()) return first;
  // The writer may have been mid-change: keep only what a second look confirms.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  VerifyReport second = one_pass(reader);
  std::set<std::string> again(second.problems.begin(), second.problems.end());
  std::vector<std::string> confirmed;
  for (auto& p : first.problems) {
    if (again.count(p)) confirmed.push_back(p);
  }
  second.problems = std::move(confirmed);
  return second;
}

}  // namespace poscache::tools
