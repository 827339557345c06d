#include "tools/verify.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "shm/accounts.hpp"
#include "shm/change_ring.hpp"
#include "shm/cpu_relax.hpp"
#include "shm/hash.hpp"
#include "shm/index.hpp"
#include "shm/layout.hpp"
#include "shm/seqlock.hpp"
#include "shm/values/key_text.hpp"

namespace poscache::tools {

using namespace shm;

namespace {

std::string slot_name(std::uint64_t s) {
  return "slot " + std::to_string(s);
}

// One look at the whole segment, region by region, in this order: slots, buckets, the account
// index, the header's counts, the journal, the change ring. Later regions are judged against
// what the slots held (live_, hash_of_, account_of_).
class Pass {
 public:
  explicit Pass(const Reader& reader)
      : infos_(reader.namespaces()),
        base_(static_cast<const std::byte*>(reader.mapping_base())),
        h_(*reinterpret_cast<const SegmentHeader*>(base_)),
        ga_(geometry_for(h_.capacity)) {}

  VerifyReport run() {
    slots_ = reinterpret_cast<const Slot*>(base_ + h_.slots_offset);
    const std::uint64_t epoch = load_acquire(&h_.index_epoch);
    index_ = reinterpret_cast<const Bucket*>(base_ + h_.index_offset[epoch & 1]);
    mask_ = h_.index_buckets - 1;
    // The account stripes and epoch as this pass begins (for the account index's checks).
    stripes_before_.resize(ga_.account_stripes);
    const auto* st = reinterpret_cast<const std::uint64_t*>(base_ + ga_.stripes_offset);
    for (std::uint64_t i = 0; i < ga_.account_stripes; ++i)
      stripes_before_[i] = load_acquire(&st[i]);
    const std::uint64_t epoch_before = load_acquire(&h_.accounts_epoch);
    changes_before_ = load_acquire(&h_.change_seq);  // pairs with the writer's release per change

    check_slots();
    check_buckets();
    std::vector<std::string> index_problems = check_accounts();
    const std::uint64_t epoch_after = load_acquire(&h_.accounts_epoch);
    if ((epoch_before & 1) == 0 && epoch_after == epoch_before) {
      r_.problems.insert(r_.problems.end(), index_problems.begin(), index_problems.end());
    }
    check_counts();
    check_journal();
    check_change_ring();
    return std::move(r_);
  }

 private:
  // Slots: each live one is well formed and reachable through the index.
  void check_slots() {
    hash_of_.assign(h_.capacity, 0);
    account_of_.assign(h_.capacity, 0);
    live_.assign(h_.capacity, false);
    live_per_ns_.assign(infos_.size(), 0);
    std::set<std::string> keys;
    std::uint64_t words[kPayloadWords];
    for (std::uint64_t s = 0; s < h_.capacity; ++s) {
      ++r_.slots_checked;
      if (!read_bounded(slots_[s], words, kPayloadWords)) {
        r_.problems.push_back(slot_name(s) + ": stuck mid-write (odd sequence " +
                              std::to_string(load_relaxed(&slots_[s].seq)) + ")");
        continue;
      }
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      if (p.ns == kFreeNamespace) continue;
      ++r_.live_slots;
      if (p.ns >= infos_.size()) {
        r_.problems.push_back(slot_name(s) + ": namespace id " + std::to_string(p.ns) +
                              " is not in the header");
        continue;
      }
      ++live_per_ns_[p.ns];
      check_live_slot(s, p, keys);
    }
  }

  void check_live_slot(std::uint64_t s, const SlotPayload& p, std::set<std::string>& keys) {
    const std::string_view account(p.account, std::min<std::size_t>(p.account_len, kMaxAccountLen));
    const std::string_view instrument(p.instrument,
                                      std::min<std::size_t>(p.instrument_len, kMaxInstrumentLen));
    std::string key;
    detail::key_text(key, infos_[p.ns].name, account, instrument);
    auto problem = [&](const std::string& what) { r_.problems.push_back(slot_name(s) + what); };
    if (auto ok = validate_account(account); !ok) problem(": " + ok.error());
    if (auto ok = validate_instrument(instrument); !ok) problem(": " + ok.error());
    if (p.account_len > kMaxAccountLen || p.instrument_len > kMaxInstrumentLen) return;
    const std::uint64_t hash = key_hash(p.ns, account, instrument);
    if (hash != p.key_hash) problem(" (" + key + "): stored hash does not match its key");
    if (account_hash(account) != p.account_hash)
      problem(" (" + key + "): stored account hash does not match its account");
    account_of_[s] = account_key(p.account_hash);
    const std::size_t nf = infos_[p.ns].fields.size();
    if (nf < 32 && (p.fields_set >> nf) != 0)
      problem(" (" + key + "): fields_set has bits beyond the schema's " + std::to_string(nf) +
              " fields");
    if (p.updated_at_ns < p.created_at_ns) problem(" (" + key + "): updated_at before created_at");
    if (!keys.insert(key).second) problem(" (" + key + "): the key is held by another slot too");
    const bool found =
        probe(index_, mask_, h_.capacity, hash, [&](std::uint32_t o) { return o == s; });
    if (!found) {  // a candidate: the index this pass began with may have been replaced since
      if (std::string now = judge_reachable(s); !now.empty()) r_.problems.push_back(now);
    }
    hash_of_[s] = hash;
    live_[s] = true;
  }

  // Buckets: each points at a live slot with a matching tag, and no slot has two buckets (a
  // remove would tombstone one and leave the other pointing at whatever the slot holds next).
  void check_buckets() {
    std::vector<std::uint64_t> bucket_of(h_.capacity, ~std::uint64_t{0});
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      ++r_.buckets_checked;
      const std::uint64_t b = load_acquire(&index_[i]);
      if (b == kEmptyBucket) continue;
      const std::uint32_t ref = bucket_ref(b);
      if (ref == kTombstoneRef) {
        ++r_.tombstones;
        continue;
      }
      // What looks wrong against the slots as check_slots() copied them is only a candidate
      // (the writer goes on meanwhile, and may replace the whole index): each is judged again
      // alone, against the index in force and the slot as it is now.
      const std::uint64_t s = ref - 1u;
      if (s >= h_.capacity || !live_[s] || bucket_tag(hash_of_[s]) != bucket_tag(b)) {
        if (std::string now = judge_bucket(i); !now.empty()) r_.problems.push_back(now);
      } else if (bucket_of[s] != ~std::uint64_t{0}) {
        if (std::string now = judge_shared(bucket_of[s], i); !now.empty())
          r_.problems.push_back(now);
      } else {
        bucket_of[s] = i;
      }
    }
  }

  // --- judging a candidate again, alone, as readers judge a read (shm/index.hpp, XL1-XL3) ------
  // An index problem is claimed only from one instant at which neither the index epoch (an
  // index rebuilt and published meanwhile: XB2) nor the buckets and slot looked at moved: the
  // active index is read as a reader reads it, each slot under its seqlock. A writer that keeps
  // changing them for kJudgeTries looks leaves nothing claimed. A candidate found in an index a
  // rebuild has replaced since the pass began is judged against the new one: only damage that is
  // there now is reported (and verify() keeps only what a second pass reports again).
  static constexpr int kJudgeTries = 64;

  const Bucket* active_index(std::uint64_t epoch) const {
    return reinterpret_cast<const Bucket*>(base_ + h_.index_offset[epoch & 1]);
  }

  // A consistent copy of slot `s` and the (even) sequence it holds, or false.
  bool copy_slot(std::uint64_t s, std::uint64_t* words, std::uint64_t& seq) const {
    seq = load_acquire(&slots_[s].seq);
    return (seq & 1) == 0 && try_read(slots_[s], words, kPayloadWords);
  }

  // The hash of the key a copied payload holds; false if it holds none (free, or not a key).
  bool copied_key_hash(const std::uint64_t* words, std::uint64_t& hash) const {
    SlotPayload p;
    std::memcpy(&p, words, sizeof p);
    if (p.ns == kFreeNamespace || p.ns >= infos_.size() || p.account_len > kMaxAccountLen ||
        p.instrument_len > kMaxInstrumentLen)
      return false;
    hash = key_hash(p.ns, {p.account, p.account_len}, {p.instrument, p.instrument_len});
    return true;
  }

  // What is wrong with bucket `i` of the active index now ("" if nothing, or no stable look).
  std::string judge_bucket(std::uint64_t i) const {
    const std::string bucket = "bucket " + std::to_string(i);
    std::uint64_t words[kPayloadWords];
    for (int t = 0; t < kJudgeTries; ++t, cpu_relax()) {
      const std::uint64_t e = load_acquire(&h_.index_epoch);  // XL1
      const Bucket* idx = active_index(e);
      const std::uint64_t b = load_acquire(&idx[i]);
      std::string what;
      std::uint64_t seq = 0, hash = 0;
      const std::uint32_t ref = bucket_ref(b);
      const std::uint64_t s = ref - 1u;
      if (b == kEmptyBucket || ref == kTombstoneRef) {
        // nothing to judge
      } else if (s >= h_.capacity) {
        what = bucket + ": points at slot " + std::to_string(s) + " beyond capacity";
      } else if (!copy_slot(s, words, seq)) {
        continue;  // mid-write: look again
      } else if (!copied_key_hash(words, hash)) {
        what = bucket + ": points at free " + slot_name(s);
      } else if (bucket_tag(hash) != bucket_tag(b)) {
        what = bucket + ": tag does not match " + slot_name(s) + "'s hash";
      }
      const bool slot_still = s >= h_.capacity || b == kEmptyBucket || ref == kTombstoneRef ||
                              load_acquire(&slots_[s].seq) == seq;
      if (slot_still && load_acquire(&idx[i]) == b && load_acquire(&h_.index_epoch) == e)
        return what;
    }
    return {};
  }

  // Whether buckets `first` and `second` of the active index both point at one slot now.
  std::string judge_shared(std::uint64_t first, std::uint64_t second) const {
    for (int t = 0; t < kJudgeTries; ++t, cpu_relax()) {
      const std::uint64_t e = load_acquire(&h_.index_epoch);
      const Bucket* idx = active_index(e);
      const std::uint64_t a = load_acquire(&idx[first]), b = load_acquire(&idx[second]);
      if (load_acquire(&idx[first]) != a || load_acquire(&h_.index_epoch) != e) continue;
      const std::uint32_t ref = bucket_ref(a);
      if (a == kEmptyBucket || ref == kTombstoneRef || bucket_ref(b) != ref) return {};
      return "bucket " + std::to_string(second) + ": points at " + slot_name(ref - 1u) +
             ", as bucket " + std::to_string(first) + " does (one slot, two buckets)";
    }
    return {};
  }

  // What is wrong if live slot `s` cannot be reached through the active index now.
  std::string judge_reachable(std::uint64_t s) const {
    std::uint64_t words[kPayloadWords];
    for (int t = 0; t < kJudgeTries; ++t, cpu_relax()) {
      const std::uint64_t e = load_acquire(&h_.index_epoch);
      std::uint64_t seq = 0, hash = 0;
      if (!copy_slot(s, words, seq)) continue;
      if (!copied_key_hash(words, hash)) return {};  // freed meanwhile: nothing to reach
      const bool found =
          probe(active_index(e), mask_, h_.capacity, hash, [&](std::uint32_t o) { return o == s; });
      if (load_acquire(&slots_[s].seq) != seq || load_acquire(&h_.index_epoch) != e) continue;
      if (found) return {};
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      std::string key;
      detail::key_text(key, infos_[p.ns].name, {p.account, p.account_len},
                       {p.instrument, p.instrument_len});
      return slot_name(s) + " (" + key +
             "): not reachable through the index (a reader would miss it)";
    }
    return {};
  }

  // Whether an account changed during this pass: its stripe moved since the pass began, or is
  // odd.
  bool in_flux(std::uint64_t key) const {
    const auto* stripes = reinterpret_cast<const std::uint64_t*>(base_ + ga_.stripes_offset);
    const std::uint64_t i = key & (ga_.account_stripes - 1);
    return (stripes_before_[i] & 1) != 0 || load_acquire(&stripes[i]) != stripes_before_[i];
  }

  // The account index (shm/accounts.hpp): each entry is found from its home, its list holds
  // exactly `count` live slots of its account, and every live slot is in its account's list.
  // Beside a running writer an account that changed during this pass is not judged, nor is the
  // index if entries moved (the epoch, checked by run()): the slots were read before the lists,
  // and a list walked while it changes may end anywhere. Returns what it found wrong.
  std::vector<std::string> check_accounts() {
    const auto* entries = reinterpret_cast<const AccountEntry*>(base_ + ga_.accounts_offset);
    const auto* links = reinterpret_cast<const std::uint32_t*>(base_ + ga_.links_offset);
    std::vector<std::string> index_problems;
    std::set<std::uint64_t> changing;  // account keys in flux during this pass
    std::vector<bool> listed(h_.capacity, false);
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      const std::uint64_t key = load_relaxed(&entries[i].key);
      if (key == 0) continue;
      const std::string entry = "account entry " + std::to_string(i);
      std::vector<std::string> found_wrong;
      const AccountRef found = find_account(entries, mask_, key);
      if (!found.found || found.head != load_relaxed(&entries[i].head))
        found_wrong.push_back(entry + ": not found from its home (a snapshot would miss it)");
      const std::uint32_t count = load_relaxed(&entries[i].count);
      std::uint32_t s = load_relaxed(&entries[i].head);
      std::uint32_t walked = 0;
      for (; s != kNil && walked <= count; s = load_relaxed(&links[s]), ++walked) {
        if (s >= h_.capacity || !live_[s] || account_of_[s] != key || listed[s]) {
          found_wrong.push_back(entry + ": its list reaches " +
                                (s >= h_.capacity ? "slot " + std::to_string(s) + " beyond capacity"
                                 : !live_[s]      ? "free " + slot_name(s)
                                 : listed[s]      ? slot_name(s) + " a second time"
                                                  : slot_name(s) + " of another account"));
          break;
        }
        listed[s] = true;
      }
      if (walked != count)
        found_wrong.push_back(entry + ": counts " + std::to_string(count) +
                              " positions, its list " +
                              (walked > count ? "is longer" : "holds " + std::to_string(walked)));
      if (in_flux(key)) {
        changing.insert(key);
      } else {
        index_problems.insert(index_problems.end(), found_wrong.begin(), found_wrong.end());
      }
    }
    for (std::uint64_t s = 0; s < h_.capacity; ++s) {
      if (live_[s] && !listed[s] && !changing.count(account_of_[s]) && !in_flux(account_of_[s])) {
        index_problems.push_back(slot_name(s) +
                                 ": in no account's list (a snapshot would miss it)");
        break;
      }
    }
    return index_problems;
  }

  // The header's live counts, in all and by namespace, against the slots: judged only if no
  // change was published from the walk's start to the counts' reading (a count read at one
  // instant and slots walked over many disagree by whatever changed meanwhile, and a count that
  // swings by one matches a wrong walk now and then: two passes are not enough). At rest, and
  // in every quiet moment of a live writer, they are judged.
  void check_counts() {
    const std::uint64_t counted = load_relaxed(&h_.counters.live);
    std::vector<std::uint64_t> ns_counted(infos_.size());
    for (std::size_t n = 0; n < infos_.size(); ++n)
      ns_counted[n] = load_relaxed(&h_.namespace_live[n]);
    std::atomic_thread_fence(std::memory_order_acquire);  // the counts, then the sequence
    if (load_relaxed(&h_.change_seq) != changes_before_) return;
    if (counted != r_.live_slots) {
      r_.problems.push_back("header counts " + std::to_string(counted) +
                            " live positions, slots hold " + std::to_string(r_.live_slots));
    }
    for (std::size_t n = 0; n < infos_.size(); ++n) {
      if (ns_counted[n] != live_per_ns_[n]) {
        r_.problems.push_back("header counts " + std::to_string(ns_counted[n]) +
                              " live positions in " + infos_[n].name + ", slots hold " +
                              std::to_string(live_per_ns_[n]));
      }
    }
  }

  // The journal (shm/layout.hpp): tail first, then head; both only grow, so head >= tail and at
  // most `entries` apart in a sound journal, whatever the writer does meanwhile.
  void check_journal() {
    const Geometry g = geometry_for(h_.capacity);
    const auto* j = reinterpret_cast<const JournalHeader*>(base_ + g.journal_offset);
    const std::uint64_t tail = load_acquire(&j->tail);
    const std::uint64_t head = load_acquire(&j->head);
    if (head < tail) {
      r_.problems.push_back("journal: head " + std::to_string(head) + " is behind tail " +
                            std::to_string(tail));
    } else if (head - tail > g.journal_entries) {
      r_.problems.push_back("journal: " + std::to_string(head - tail) +
                            " pending entries exceed its " + std::to_string(g.journal_entries));
    }
  }

  // The change ring (shm/change_ring.hpp): every cell below the head holds the position the head
  // says was written there, or a later one of the same cell (the writer went on meanwhile), or is
  // being written. A cell holding another cell's position, or an older one, is damage.
  void check_change_ring() {
    if (load_relaxed(&h_.ring_cells) == 0) return;
    const Geometry g = geometry_for(h_.capacity);
    const auto* ring = reinterpret_cast<const ChangeCell*>(base_ + g.ring_offset);
    const std::uint64_t ring_head = load_acquire(&h_.ring_head);
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
      r_.problems.push_back(
          "change ring: " + std::to_string(bad) +
          " cells below the head do not hold their position (the first: " + "position " +
          std::to_string(first_bad) + " holds sequence " + std::to_string(first_seq) + ")");
    }
  }

  const std::vector<NamespaceInfo>& infos_;
  const std::byte* base_;
  const SegmentHeader& h_;
  const Geometry ga_;  // where the account index, its links and stripes are
  const Slot* slots_ = nullptr;
  const Bucket* index_ = nullptr;  // the active index
  std::uint64_t mask_ = 0;
  std::vector<std::uint64_t> stripes_before_;
  std::uint64_t changes_before_ = 0;  // the change sequence as the walk began
  // What the slots held, by slot: its key's hash, its account_key, whether it is live.
  std::vector<std::uint64_t> hash_of_, account_of_;
  std::vector<bool> live_;
  std::vector<std::uint64_t> live_per_ns_;
  VerifyReport r_;
};

}  // namespace

VerifyReport verify(const Reader& reader) {
  VerifyReport first = Pass(reader).run();
  if (first.problems.empty()) return first;
  // The writer may have been mid-change: keep only what a second look confirms.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  VerifyReport second = Pass(reader).run();
  std::set<std::string> again(second.problems.begin(), second.problems.end());
  std::vector<std::string> confirmed;
  for (auto& p : first.problems) {
    if (again.count(p)) confirmed.push_back(p);
  }
  second.problems = std::move(confirmed);
  return second;
}

}  // namespace poscache::tools
