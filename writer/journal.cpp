#include "writer/journal.hpp"

#include <algorithm>
#include <cstring>

#include "shm/slot_codec.hpp"
#include "shm/values/key_text.hpp"

namespace poscache::detail {

using namespace poscache::shm;

RemovalEvent spill_of(const SlotPayload& position) {
  RemovalEvent e;
  e.kind = RemovalEvent::Kind::spill;
  e.version = position.version;
  e.payload = position;
  return e;
}

RemovalEvent erase_of(const KeyRef& key, std::uint64_t version) {
  RemovalEvent e;
  e.kind = RemovalEvent::Kind::erase;
  e.version = version;
  SlotPayload& p = e.payload;
  p.ns = key.ns;
  p.account_len = static_cast<std::uint8_t>(std::min(key.account.size(), kMaxAccountLen));
  p.instrument_len = static_cast<std::uint8_t>(std::min(key.instrument.size(), kMaxInstrumentLen));
  std::memcpy(p.account, key.account.data(), p.account_len);
  std::memcpy(p.instrument, key.instrument.data(), p.instrument_len);
  return e;
}

RemovalEvent pattern_of(RemovalEvent::Kind kind, std::uint64_t version,
                        std::optional<NamespaceId> ns, std::string_view text) {
  RemovalEvent e;
  e.kind = kind;
  e.version = version;
  e.ns = ns;
  e.text.assign(text);
  return e;
}

bool covers(const RemovalEvent& e, std::string_view ns_name, const SlotPayload& p) {
  using Kind = RemovalEvent::Kind;
  const std::string_view account(p.account, p.account_len),
      instrument(p.instrument, p.instrument_len);
  switch (e.kind) {
    case Kind::all:
      return true;
    case Kind::ns:
      return e.ns && p.ns == *e.ns;
    case Kind::account:
      return account == e.text && (!e.ns || p.ns == *e.ns);
    case Kind::erase:
      return same_key(p, e.payload);
    case Kind::glob: {
      std::string k;
      return key_matches(e.text.c_str(), k, ns_name, account, instrument);
    }
    case Kind::spill:
      return false;
  }
  return false;
}

void to_entry(const RemovalEvent& e, JournalEntry& out) noexcept {
  out.version = e.version;
  out.kind = static_cast<std::uint8_t>(e.kind);
  out.has_ns = e.ns ? 1 : 0;
  out.ns = e.ns.value_or(0);
  const std::size_t n = std::min(e.text.size(), kJournalTextMax);
  out.text_len = static_cast<std::uint16_t>(n);
  std::memcpy(out.text, e.text.data(), n);
  out.payload = e.payload;
}

RemovalEvent from_entry(const JournalEntry& in, std::uint64_t pos) {
  RemovalEvent e;
  e.kind = static_cast<RemovalEvent::Kind>(in.kind);
  e.version = in.version;
  if (in.has_ns != 0) e.ns = in.ns;
  e.text.assign(in.text, std::min<std::size_t>(in.text_len, kJournalTextMax));
  e.payload = in.payload;
  e.journal_pos = pos + 1;
  return e;
}

std::string entry_problem(const JournalEntry& e, std::uint64_t next_version,
                          std::uint32_t namespace_count) {
  using Kind = RemovalEvent::Kind;
  if (e.kind >= kJournalKindCount) return "unknown kind " + std::to_string(e.kind);
  if (e.version == 0 || e.version >= next_version) {
    return "version " + std::to_string(e.version) + " was never handed out (next is " +
           std::to_string(next_version) + ")";
  }
  if (e.text_len > kJournalTextMax) return "text length " + std::to_string(e.text_len);
  const auto kind = static_cast<Kind>(e.kind);
  const std::string_view text(e.text, e.text_len);
  if ((kind == Kind::ns || (kind == Kind::account && e.has_ns != 0)) && e.ns >= namespace_count)
    return "namespace id " + std::to_string(e.ns);
  if (kind == Kind::ns && e.has_ns == 0) return "namespace removal without a namespace";
  if (kind == Kind::account && !valid_account(text)) return "account is not a valid account";
  if (kind == Kind::glob && text.empty()) return "empty pattern";
  if (kind == Kind::spill || kind == Kind::erase) {
    const SlotPayload& p = e.payload;
    if (p.ns >= namespace_count) return "namespace id " + std::to_string(p.ns);
    if (p.account_len > kMaxAccountLen || !valid_account({p.account, p.account_len}))
      return "invalid account";
    if (p.instrument_len > kMaxInstrumentLen || !valid_instrument({p.instrument, p.instrument_len}))
      return "invalid instrument";
    if (kind == Kind::spill && p.version != e.version)
      return "spill of version " + std::to_string(p.version);
  }
  return {};
}

Journal::Journal(std::byte* base, const Geometry& g) noexcept
    : seg_(reinterpret_cast<SegmentHeader*>(base)),
      header_(reinterpret_cast<JournalHeader*>(base + g.journal_offset)),
      entries_(reinterpret_cast<JournalEntry*>(base + g.journal_offset + sizeof(JournalHeader))),
      size_(g.journal_entries) {
  store_relaxed(&seg_->journal_head, load_relaxed(&header_->head));
  store_relaxed(&seg_->journal_tail, load_relaxed(&header_->tail));
  store_relaxed(&seg_->journal_overflows, load_relaxed(&header_->overflows));
}

void Journal::advance_tail(std::uint64_t tail) const noexcept {
  // release: pairs with the apply thread's acquire load in append (it may now reuse entries).
  store_release(&header_->tail, tail);
  store_relaxed(&seg_->journal_tail, tail);
}

std::uint64_t Journal::overflows() const noexcept {
  return load_relaxed(&header_->overflows);
}

void Journal::append(RemovalEvent& e) noexcept {
  if (!present()) return;
  JournalHeader& j = *header_;
  const std::uint64_t head = load_relaxed(&j.head);  // only this thread stores it
  // acquire: pairs with the sync thread's release store of tail (advance_tail); entries
  // below it are no longer needed, so the one at head % size may be overwritten.
  const std::uint64_t tail = load_acquire(&j.tail);
  if (head - tail >= size_ || e.text.size() > kJournalTextMax) {
    const std::uint64_t overflows = load_relaxed(&j.overflows) + 1;
    store_relaxed(&j.overflows, overflows);
    store_relaxed(&seg_->journal_overflows, overflows);
    return;
  }
  to_entry(e, entries_[head % size_]);
  e.journal_pos = head + 1;
  // release: the entry is complete before head covers it. For a writer killed here, the next
  // writer maps the segment after this process's stores retired, in program order (the same
  // argument as the undo record's, shm/seqlock.hpp).
  store_release(&j.head, head + 1);
  store_relaxed(&seg_->journal_head, head + 1);
}

Journal::Scan Journal::scan(std::uint64_t next_version, std::uint32_t namespace_count) const {
  Scan r;
  const std::uint64_t head = load_acquire(&header_->head);
  const std::uint64_t tail = load_acquire(&header_->tail);
  if (head < tail || head - tail > size_) {
    r.header_corrupt = true;
    r.problem = "the journal's header is corrupt (head " + std::to_string(head) + ", tail " +
                std::to_string(tail) + ", " + std::to_string(size_) + " entries)";
    advance_tail(head);
    return r;
  }
  for (std::uint64_t n = tail; n < head; ++n) {
    const JournalEntry& e = entries_[n % size_];
    if (std::string why = entry_problem(e, next_version, namespace_count); !why.empty()) {
      if (r.problem.empty()) r.problem = "entry " + std::to_string(n) + ": " + why;
      r.invalid.push_back(n);
      continue;
    }
    r.valid.emplace_back(n, &e);
  }
  return r;
}

void JournalTail::done(std::uint64_t pos) noexcept {
  if (pos == 0 || !journal_.present()) return;
  JournalHeader& j = journal_.header();
  const std::uint64_t n = journal_.size();
  done_[(pos - 1) % n] = 1;
  std::uint64_t tail = load_relaxed(&j.tail);  // only this thread stores it
  const std::uint64_t head = load_acquire(&j.head);
  const std::uint64_t from = tail;
  while (tail < head && done_[tail % n] != 0) {
    done_[tail % n] = 0;
    ++tail;
  }
  if (tail != from) journal_.advance_tail(tail);
}

}  // namespace poscache::detail
