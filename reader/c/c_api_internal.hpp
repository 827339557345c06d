// What the sources of the C interface share (reader/c/c_api.cpp, reader/c/c_api_refresh.cpp): the
// handles' definitions, the calling thread's error text, the guard that keeps C++ exceptions
// out of C, and a position's C copy. Internal to poscache_c.
#pragma once

#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "poscache/poscache.h"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"

struct poscache_reader {
  poscache::Reader reader;
};

struct poscache_producer {
  std::unique_ptr<poscache::Producer> producer;
};

namespace poscache::c_api {

// Sets the calling thread's error text (poscache_last_error) and returns `status`.
int failed(int status, std::string why);

// Runs `f`, turning any exception into POSCACHE_ERROR with its message.
template <class F>
int guarded(F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return failed(POSCACHE_ERROR, "out of memory");
  } catch (const std::exception& e) {
    return failed(POSCACHE_ERROR, e.what());
  } catch (...) {
    return failed(POSCACHE_ERROR, "unknown error");
  }
}

inline std::string_view sv(const char* s) {
  return s == nullptr ? std::string_view() : std::string_view(s);
}

// The C copy of a position (nothing in it points into shared memory).
void to_c(const Position& p, poscache_position& out) noexcept;

}  // namespace poscache::c_api
