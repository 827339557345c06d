// The key hash: XXH3-64 (libxxhash, seed 0) over ns (2 bytes, little-endian), the account,
// one 0x00 separator and the instrument. Readers and the writer must agree bit for bit, so the
// algorithm is part of the layout fingerprint (kHashAlgorithm in shm/layout.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#define XXH_INLINE_ALL  // header-only: the hash inlines into get(), no call into the .so
#include <xxhash.h>

#include "poscache/schema.hpp"

namespace poscache::shm {

// Callers have checked the lengths (<= kMaxAccountLen, <= kMaxInstrumentLen).
inline std::uint64_t key_hash(std::uint16_t ns, std::string_view account,
                              std::string_view instrument) noexcept {
  unsigned char buf[2 + kMaxAccountLen + 1 + kMaxInstrumentLen];
  buf[0] = static_cast<unsigned char>(ns & 0xFF);
  buf[1] = static_cast<unsigned char>(ns >> 8);
  std::memcpy(buf + 2, account.data(), account.size());
  buf[2 + account.size()] = 0;
  std::memcpy(buf + 3 + account.size(), instrument.data(), instrument.size());
  return XXH3_64bits(buf, 3 + account.size() + instrument.size());
}

}  // namespace poscache::shm
