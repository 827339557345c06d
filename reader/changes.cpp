// The change ring's records as the public API names them (poscache/changes.hpp).
#include "poscache/changes.hpp"

#include <cstring>
#include <string>

#include "reader/change_decode.hpp"
#include "shm/values/key_text.hpp"

namespace poscache {

std::string_view to_string(ChangeKind k) noexcept {
  switch (k) {
    case ChangeKind::inserted:
      return "inserted";
    case ChangeKind::updated:
      return "updated";
    case ChangeKind::erased:
      return "erased";
    case ChangeKind::evicted:
      return "evicted";
    case ChangeKind::expired:
      return "expired";
    case ChangeKind::invalidated_account:
      return "invalidated_account";
    case ChangeKind::invalidated_namespace:
      return "invalidated_namespace";
    case ChangeKind::invalidated_glob:
      return "invalidated_glob";
    case ChangeKind::invalidated_all:
      return "invalidated_all";
  }
  return "unknown";
}

std::string_view to_string(ChangeStatus s) noexcept {
  switch (s) {
    case ChangeStatus::ok:
      return "ok";
    case ChangeStatus::lapped:
      return "lapped";
    case ChangeStatus::writer_restarted:
      return "writer_restarted";
    case ChangeStatus::invalid_position:
      return "invalid_position";
    case ChangeStatus::unavailable:
      return "unavailable";
    case ChangeStatus::retired:
      return "retired";
  }
  return "unknown";
}

bool Change::covers(NamespaceId key_ns, std::string_view ns_name, std::string_view acct,
                    std::string_view instr) const {
  switch (kind) {
    case ChangeKind::inserted:
    case ChangeKind::updated:
    case ChangeKind::erased:
    case ChangeKind::evicted:
    case ChangeKind::expired:
      return ns == key_ns && account_view() == acct && instrument_view() == instr;
    case ChangeKind::invalidated_account:
      return account_view() == acct && (ns == kAnyNamespace || ns == key_ns);
    case ChangeKind::invalidated_namespace:
      return ns == key_ns;
    case ChangeKind::invalidated_glob: {
      const std::string glob(pattern_view());
      std::string scratch;
      return detail::key_matches(glob.c_str(), scratch, ns_name, acct, instr);
    }
    case ChangeKind::invalidated_all:
      return true;
  }
  return false;
}

namespace detail {

using namespace shm;

// A validated record as a Change; false if it cannot be one (a corrupt segment).
bool decode_change(const shm::RecordWords& r, std::uint32_t ns_count, Change& c) noexcept {
  const ChangeMeta m = r.meta();
  if (m.kind < 1 || m.kind > 9 || m.text_len > kMaxChangeText) return false;
  c.kind = static_cast<ChangeKind>(m.kind);
  c.ns = m.ns;
  c.version = r.w[1];
  c.at_ns = static_cast<std::int64_t>(r.w[2]);
  c.account_len = c.instrument_len = 0;
  c.pattern_len = 0;
  char text[kMaxChangeText];
  r.text(text, m.text_len);
  const bool any_ns = m.ns == kAnyNamespace;
  switch (c.kind) {
    case ChangeKind::inserted:
    case ChangeKind::updated:
    case ChangeKind::erased:
    case ChangeKind::evicted:
    case ChangeKind::expired:
      if (m.ns >= ns_count || m.alen < 1 || m.alen > kMaxAccountLen || m.ilen < 1 ||
          m.ilen > kMaxInstrumentLen || m.alen + m.ilen != m.text_len)
        return false;
      c.account_len = m.alen;
      c.instrument_len = m.ilen;
      std::memcpy(c.account, text, m.alen);
      std::memcpy(c.instrument, text + m.alen, m.ilen);
      return true;
    case ChangeKind::invalidated_account:
      if ((!any_ns && m.ns >= ns_count) || m.text_len < 1 || m.text_len > kMaxAccountLen)
        return false;
      c.account_len = static_cast<std::uint8_t>(m.text_len);
      std::memcpy(c.account, text, m.text_len);
      return true;
    case ChangeKind::invalidated_namespace:
      return m.ns < ns_count && m.text_len == 0;
    case ChangeKind::invalidated_glob:
      if (m.text_len < 1 || m.text_len > kMaxPatternLen) return false;
      c.pattern_len = m.text_len;
      std::memcpy(c.pattern, text, m.text_len);
      return true;
    case ChangeKind::invalidated_all:
      return m.text_len == 0;
  }
  return false;
}

}  // namespace detail

}  // namespace poscache
