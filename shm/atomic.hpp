// Word accessors for memory shared with other processes, Aeron style: every word of the segment
// that another process (or the writer's sync thread) reads or writes concurrently is a plain
// integer in shm/layout.hpp, touched only through these functions, whose names carry the memory
// order. A reader of the code sees the ordering at each call site; the pairs are listed in
// shm/layout.hpp, "PROTOCOL INDEX".
//
// They are the GCC/Clang __atomic builtins, what std::atomic_ref compiles to, used directly
// because readers hold const pointers into a PROT_READ mapping, and C++20's atomic_ref cannot be
// formed on const memory. Aligned 4- and 8-byte words are always lock-free (hence address-free:
// safe across processes) on the targets we build for: asserted below.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace poscache::shm {

template <class T>
concept SharedWord = std::is_integral_v<T> &&(sizeof(T) == 4 || sizeof(T) == 8) &&
                     __atomic_always_lock_free(sizeof(T), 0);

template <SharedWord T>
inline T load_relaxed(const T* word) noexcept {
  return __atomic_load_n(word, __ATOMIC_RELAXED);
}
template <SharedWord T>
inline T load_acquire(const T* word) noexcept {
  return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}
template <SharedWord T>
inline void store_relaxed(T* word, std::type_identity_t<T> value) noexcept {
  __atomic_store_n(word, value, __ATOMIC_RELAXED);
}
template <SharedWord T>
inline void store_release(T* word, std::type_identity_t<T> value) noexcept {
  __atomic_store_n(word, value, __ATOMIC_RELEASE);
}
// A counter or gauge with one writer: a relaxed load and store, no locked read-modify-write.
template <SharedWord T>
inline void add_relaxed(T* word, std::type_identity_t<T> n) noexcept {
  store_relaxed(word, static_cast<T>(load_relaxed(word) + n));
}

// Text kept as 64-bit words, so that it is written and read with the same relaxed word accesses
// as everything else the seqlock guards. put_text truncates to the array.
template <std::size_t N>
inline void put_text(std::uint64_t (&words)[N], std::string_view text) noexcept {
  char buf[N * 8] = {};
  if (!text.empty())  // an empty view's data() may be null: memcpy from null is undefined
    std::memcpy(buf, text.data(), text.size() < sizeof buf ? text.size() : sizeof buf);
  for (std::size_t i = 0; i < N; ++i) {
    std::uint64_t w;
    std::memcpy(&w, buf + 8 * i, 8);
    store_relaxed(&words[i], w);
  }
}

}  // namespace poscache::shm
