#include "writer/ingest/ring_codec.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstring>

namespace poscache::ingest {
namespace {
int128 value_of(const shm::RingMessage& m, std::size_t i) {
  const auto u = (static_cast<unsigned __int128>(m.values[2 * i + 1]) << 64) | m.values[2 * i];
  return static_cast<int128>(u);
}
}  // namespace

SlotMasks slot_masks(const std::vector<NamespaceSpec>& specs) {
  SlotMasks out(specs.size());
  for (std::size_t n = 0; n < specs.size(); ++n) {
    out[n].fill(0);
    for (std::size_t f = 0; f < specs[n].fields.size() && f < kMaxFields; ++f) {
      const std::size_t first = field_slot(specs[n].fields, f);
      for (std::size_t k = 0; k < slots_of(specs[n].fields[f]) && first + k < kMaxFields; ++k)
        out[n][f] |= 1u << (first + k);
    }
  }
  return out;
}

std::uint32_t slots_of_fields(const SlotMasks* slots, std::size_t ns, std::uint32_t fields_mask) {
  fields_mask &= (1u << kMaxFields) - 1;
  if (slots == nullptr || ns >= slots->size()) return fields_mask;
  std::uint32_t out = 0;
  for (std::uint32_t m = fields_mask; m != 0; m &= m - 1)
    out |= (*slots)[ns][static_cast<unsigned>(__builtin_ctz(m))];
  return out;
}

// Copies what a message uses, not its whole 512 bytes: its first line (kind, lengths, mask,
// hash, sequence and the start of the account), then the rest of the key, the values the mask
// names (the first three for the other kinds) and the text, by the lengths in the copy of the
// first line (clamped to their arrays). Nothing outside those ranges is read by the decoder, so
// the lines a one-field upsert leaves untouched are never pulled from the producer's cache.
void copy_message(shm::RingMessage& dst, const shm::RingMessage& src, const SlotMasks* slots) {
  constexpr std::size_t kHead = offsetof(shm::RingMessage, account);
  std::memcpy(&dst, &src, kHead);  // kind .. source_seq (32 bytes)
  const std::size_t alen = std::min<std::size_t>(dst.account_len, kMaxAccountLen);
  const std::size_t ilen = std::min<std::size_t>(dst.instrument_len, kMaxInstrumentLen);
  const std::size_t tlen = std::min<std::size_t>(dst.text_len, shm::kRingTextLen);
  std::memcpy(dst.account, src.account, alen);
  std::memcpy(dst.instrument, src.instrument, ilen);
  if (dst.kind == static_cast<std::uint8_t>(shm::RingKind::upsert)) {
    for (std::uint32_t mask = slots_of_fields(slots, dst.ns, dst.fields_mask); mask != 0;
         mask &= mask - 1) {
      const unsigned f = static_cast<unsigned>(__builtin_ctz(mask));
      std::memcpy(&dst.values[2 * f], &src.values[2 * f], 16);
    }
  } else {
    std::memcpy(dst.values, src.values, 3 * 16);
  }
  std::memcpy(dst.text, src.text, tlen);
}

RingDecoded decode_ring_message(const shm::RingMessage& m, std::size_t namespaces, Update& update,
                                std::uint64_t& hash, Command& command, std::string& error,
                                const SlotMasks* slots) {
  const auto kind = static_cast<shm::RingKind>(m.kind);
  // The checks every kind needs: the namespace and the lengths are inside their arrays.
  const bool mark_all = kind == shm::RingKind::mark && m.account_len == 0;
  const bool key_kind = kind == shm::RingKind::upsert || kind == shm::RingKind::erase ||
                        kind == shm::RingKind::add || kind == shm::RingKind::fill ||
                        kind == shm::RingKind::mark;
  std::string bad;
  if (kind == shm::RingKind::group) {
    bad = "a batch header inside a batch (a batch cannot hold a batch)";
  } else if (m.kind < 1 || m.kind > 9) {
    bad = "unknown message kind " + std::to_string(m.kind);
  } else if (m.ns >= namespaces && kind != shm::RingKind::invalidate_glob &&
             kind != shm::RingKind::invalidate_all &&
             !(kind == shm::RingKind::invalidate_account && m.field != 1)) {
    bad = "namespace id " + std::to_string(m.ns) + " is not one of the segment's " +
          std::to_string(namespaces);
  } else if (m.account_len > kMaxAccountLen || m.instrument_len > kMaxInstrumentLen ||
             m.text_len > shm::kRingTextLen) {
    bad = "a length beyond its field (account " + std::to_string(m.account_len) + ", instrument " +
          std::to_string(m.instrument_len) + ", text " + std::to_string(m.text_len) + ")";
  } else if (key_kind && (m.instrument_len == 0 || (m.account_len == 0 && !mark_all))) {
    bad = "an empty account or instrument";
  }
  if (!bad.empty()) {
    error = std::move(bad);
    return RingDecoded::bad;
  }
  const std::string_view account(m.account, m.account_len);
  const std::string_view instrument(m.instrument, m.instrument_len);
  if (kind == shm::RingKind::upsert) {
    Update& u = update;
    u.ns = m.ns;
    u.account_len = m.account_len;
    u.instrument_len = m.instrument_len;
    u.mode = m.mode == 1 ? UpdateMode::replace : UpdateMode::merge;
    u.fields_mask = m.fields_mask;
    u.source_seq = m.source_seq;
    std::memcpy(u.account, m.account, m.account_len);
    std::memcpy(u.instrument, m.instrument, m.instrument_len);
    const std::uint32_t used = slots_of_fields(slots, m.ns, m.fields_mask);
    for (std::size_t slot = 0; slot < kMaxFields; ++slot)
      u.values[slot] = ((used >> slot) & 1u) != 0 ? value_of(m, slot) : 0;
    hash = m.key_hash;
    if (m.mode > 1) {
      error = "upsert: mode " + std::to_string(m.mode) + " is neither merge nor replace";
      return RingDecoded::bad;
    }
    return RingDecoded::upsert;
  }
  Command& cmd = command;
  switch (kind) {
    case shm::RingKind::erase:
      cmd = Erase{KeyRef{m.ns, std::string(account), std::string(instrument)}};
      break;
    case shm::RingKind::invalidate_account: {
      InvalidateAccount ia{std::string(account), std::nullopt};
      if (m.field == 1) ia.ns = m.ns;
      cmd = std::move(ia);
      break;
    }
    case shm::RingKind::invalidate_namespace:
      cmd = InvalidateNamespace{m.ns};
      break;
    case shm::RingKind::invalidate_glob:
      cmd = InvalidateMatching{std::string(m.text, m.text_len)};
      break;
    case shm::RingKind::invalidate_all:
      cmd = InvalidateAll{};
      break;
    case shm::RingKind::add: {
      Add a;
      a.key.set(m.ns, account, instrument);
      a.field = m.field;
      a.reset = m.mode == 1;
      const int128 by = value_of(m, 0);
      if (by > INT64_MAX || by < INT64_MIN) {
        error = "add: 'by' is beyond 64 bits";
        return RingDecoded::bad;
      }
      a.by = static_cast<std::int64_t>(by);
      a.source_seq = m.source_seq;
      cmd = a;
      break;
    }
    case shm::RingKind::fill: {
      Fill f;
      f.key.set(m.ns, account, instrument);
      if (m.mode > 1) {
        error = "fill: side " + std::to_string(m.mode) + " is neither buy nor sell";
        return RingDecoded::bad;
      }
      f.fill.side = m.mode == 0 ? Side::buy : Side::sell;
      f.fill.qty = value_of(m, 0);
      f.fill.price = value_of(m, 1);
      f.fill.fee = value_of(m, 2);
      if (m.text_len > kMaxTradeIdLen) {
        error = "fill: trade id longer than " + std::to_string(kMaxTradeIdLen);
        return RingDecoded::bad;
      }
      f.trade_id_len = m.text_len;
      std::memcpy(f.trade_id, m.text, m.text_len);
      f.source_seq = m.source_seq;
      cmd = f;
      break;
    }
    case shm::RingKind::mark: {
      Mark mk;
      mk.key.set(m.ns, account, instrument);
      mk.price = value_of(m, 0);
      cmd = mk;
      break;
    }
    default:
      break;
  }
  return RingDecoded::command;
}

}  // namespace poscache::ingest
