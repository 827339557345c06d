// The C interface's read-through (include/poscache/poscache.h: poscache_get_or_fetch,
// poscache_request, poscache_refresh_available) over Reader::get_or_fetch, Reader::request and
// Reader::refresh_available (docs/read-through.md). As in reader/c/c_api.cpp, no C++ exception
// crosses into C.
#include <algorithm>
#include <chrono>
#include <string>

#include "poscache/refresh.hpp"
#include "reader/c/c_api_internal.hpp"

using namespace poscache;
using namespace poscache::c_api;

static_assert(static_cast<int>(FetchReason::cached) == POSCACHE_FETCH_CACHED &&
                  static_cast<int>(FetchReason::fetched) == POSCACHE_FETCH_FETCHED &&
                  static_cast<int>(FetchReason::absent) == POSCACHE_FETCH_ABSENT &&
                  static_cast<int>(FetchReason::timeout) == POSCACHE_FETCH_TIMEOUT &&
                  static_cast<int>(FetchReason::failed) == POSCACHE_FETCH_FAILED &&
                  static_cast<int>(FetchReason::no_refresher) == POSCACHE_FETCH_NO_REFRESHER &&
                  static_cast<int>(FetchReason::unavailable) == POSCACHE_FETCH_UNAVAILABLE,
              "poscache.h: the fetch reasons are FetchReason's numbers");
static_assert(static_cast<int>(RequestStatus::asked) == POSCACHE_REQUEST_ASKED &&
                  static_cast<int>(RequestStatus::pending) == POSCACHE_REQUEST_PENDING &&
                  static_cast<int>(RequestStatus::remembered) == POSCACHE_REQUEST_REMEMBERED &&
                  static_cast<int>(RequestStatus::full) == POSCACHE_REQUEST_FULL &&
                  static_cast<int>(RequestStatus::no_refresher) == POSCACHE_REQUEST_NO_REFRESHER &&
                  static_cast<int>(RequestStatus::unavailable) == POSCACHE_REQUEST_UNAVAILABLE &&
                  static_cast<int>(RequestStatus::bad_key) == POSCACHE_REQUEST_BAD_KEY,
              "poscache.h: the request statuses are RequestStatus's numbers");
static_assert(static_cast<int>(RefreshReason::stale) == POSCACHE_REFRESH_STALE &&
                  static_cast<int>(RefreshReason::miss) == POSCACHE_REFRESH_MISS &&
                  static_cast<int>(RefreshReason::forced) == POSCACHE_REFRESH_FORCED &&
                  static_cast<int>(RefreshReason::ahead) == POSCACHE_REFRESH_AHEAD,
              "poscache.h: the refresh reasons are RefreshReason's numbers");

extern "C" {

const char* poscache_fetch_reason_name(int reason) {
  if (reason < POSCACHE_FETCH_CACHED || reason > POSCACHE_FETCH_UNAVAILABLE)
    return "unknown reason";
  return to_string(static_cast<FetchReason>(reason)).data();  // static strings: NUL-terminated
}

const char* poscache_request_status_name(int status) {
  if (status < POSCACHE_REQUEST_ASKED || status > POSCACHE_REQUEST_BAD_KEY)
    return "unknown request status";
  return to_string(static_cast<RequestStatus>(status)).data();
}

int poscache_get_or_fetch(const poscache_reader* reader, const char* ns, const char* account,
                          const char* instrument, poscache_position* out, int64_t timeout_ns,
                          int force, int* reason) {
  if (reader == nullptr || out == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader or output");
  const int id = poscache_namespace_id(reader, ns);
  if (id < 0) {
    if (reason != nullptr) *reason = POSCACHE_FETCH_CACHED;  // as for any other bad key
    return failed(POSCACHE_BAD_KEY, "no namespace '" + std::string(sv(ns)) + "'");
  }
  return poscache_get_or_fetch_by_id(reader, id, account, instrument, out, timeout_ns, force,
                                     reason);
}

int poscache_get_or_fetch_by_id(const poscache_reader* reader, int ns, const char* account,
                                const char* instrument, poscache_position* out, int64_t timeout_ns,
                                int force, int* reason) {
  if (reader == nullptr || out == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader or output");
  if (reason != nullptr) *reason = POSCACHE_FETCH_CACHED;
  // An id no namespace has (the reader answers bad_key for it), as poscache_get_many gives it.
  const auto id = ns < 0 || ns > 0xFFFF ? NamespaceId{0xFFFF} : static_cast<NamespaceId>(ns);
  return guarded([&]() -> int {
    Position p;
    const FetchResult r = reader->reader.get_or_fetch(
        id, sv(account), sv(instrument), p,
        std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns)), force != 0);
    if (r.status == ReadStatus::ok || r.status == ReadStatus::stale) to_c(p, *out);
    if (reason != nullptr) *reason = static_cast<int>(r.reason);
    return static_cast<int>(r.status);
  });
}

int poscache_request(const poscache_reader* reader, const char* ns, const char* account,
                     const char* instrument, int why) {
  if (reader == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader given");
  // A rebuild is of a whole namespace, asked on the writer's socket ({"op":"rebuild"}), not here.
  if (why != POSCACHE_REFRESH_STALE && why != POSCACHE_REFRESH_MISS &&
      why != POSCACHE_REFRESH_FORCED && why != POSCACHE_REFRESH_AHEAD) {
    return failed(
        POSCACHE_BAD_INPUT,
        "why " + std::to_string(why) + " is not POSCACHE_REFRESH_STALE, _MISS, _FORCED or _AHEAD");
  }
  const int id = poscache_namespace_id(reader, ns);
  if (id < 0) return POSCACHE_REQUEST_BAD_KEY;
  return static_cast<int>(reader->reader.request(static_cast<NamespaceId>(id), sv(account),
                                                 sv(instrument), static_cast<RefreshReason>(why)));
}

int poscache_refresh_available(const poscache_reader* reader) {
  if (reader == nullptr) {
    failed(POSCACHE_BAD_INPUT, "no reader given");
    return 0;
  }
  if (reader->reader.refresh_available()) return 1;
  return guarded([&]() -> int { return failed(0, reader->reader.refresh_unavailable_because()); });
}

}  // extern "C"
