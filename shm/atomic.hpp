// Word accessors for memory shared with other processes. The names carry the memory order
// (Aeron style): every access to a word that another process reads or writes concurrently goes
// through one of these, so a reader of the code sees the ordering at the call site.
//
// They are the GCC/Clang __atomic builtins — exactly what std::atomic_ref<std::uint64_t> compiles
// to — used directly because readers hold a const pointer into a PROT_READ mapping, and C++20's
// atomic_ref cannot be formed on const memory. 8-byte aligned 64-bit words are always lock-free
// on the targets we build for (static_assert in shm/layout.hpp).
#pragma once

#include <cstdint>

namespace poscache::shm {

inline std::uint64_t load_relaxed(const std::uint64_t* word) noexcept {
  return __atomic_load_n(word, __ATOMIC_RELAXED);
}
inline void store_relaxed(std::uint64_t* word, std::uint64_t value) noexcept {
  __atomic_store_n(word, value, __ATOMIC_RELAXED);
}

}  // namespace poscache::shm
