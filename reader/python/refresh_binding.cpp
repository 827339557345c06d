// The Reader's read-through for Python (docs/read-through.md): get_or_fetch, request, pending,
// refresh_stats, and the type poscache.FetchResult. The asyncio forms are pure Python
// (poscache/aio.py) over these: get_or_fetch releases the GIL while it waits.
#include <algorithm>
#include <iterator>
#include <optional>
#include <string>

#include "poscache/refresh.hpp"
#include "reader/python/binding_common.hpp"
#include "reader/python/position_type.hpp"

namespace poscache::python {

namespace {

// poscache.FetchResult: a struct sequence (a tuple with names, as os.stat_result), made once.
PyTypeObject* g_fetch_result = nullptr;
// The reasons' str objects, interned once: FetchReason's values index them.
PyObject* g_reason_names[7] = {};

PyStructSequence_Field g_fetch_fields[] = {
    {"position", "the Position (check .stale), or None: there is none"},
    {"reason",
     "why: 'cached', 'fetched', 'absent', 'timeout', 'failed', 'no_refresher', 'unavailable'"},
    {nullptr, nullptr}};

PyStructSequence_Desc g_fetch_desc = {
    "poscache.FetchResult",
    "Reader.get_or_fetch()'s answer: (position, reason), a tuple with names. position is the "
    "copy as of the return (None when there is none; a stale copy when no answer came in time), "
    "reason says how it came.",
    g_fetch_fields, 2};

NamespaceId namespace_of(const Reader& r, const std::string& ns) {
  const auto id = r.namespace_id(ns);
  if (!id)
    throw py::value_error("segment '" + r.segment_name() + "' has no namespace '" + ns + "'");
  return *id;
}

std::string key_text(const std::string& ns, const std::string& account,
                     const std::string& instrument) {
  return ns + ":" + account + ":" + instrument;
}

// Raises for a read status that carries no copy and is not a miss, as Reader.get() does.
[[noreturn]] void raise_read(const Reader& r, ReadStatus s, const std::string& key) {
  switch (s) {
    case ReadStatus::writer_busy:
      raise(g_writer_busy, "the writer kept " + key + " mid-write past the retry bound");
    case ReadStatus::writer_dead:
      raise(g_writer_dead, "the writer died writing " + key);
    case ReadStatus::bad_key:
      throw py::value_error("bad key " + key + ": a part is empty or longer than 64 bytes");
    case ReadStatus::retired:
      raise(g_retired,
            "segment '" + r.segment_name() + "' was re-created by its writer: call follow()");
    default:
      raise(g_error, "unknown read status");
  }
}

// A wait's timeout in seconds: a number >= 0 (at most about 31 years: nanoseconds in an int64).
std::chrono::nanoseconds wait_timeout(double s) {
  if (!(s >= 0)) throw py::value_error("timeout must be a number of seconds >= 0");
  return seconds(std::min(s, 1e9));
}

RefreshReason reason_of(const std::string& why) {
  if (why == "forced") return RefreshReason::forced;
  if (why == "stale") return RefreshReason::stale;
  if (why == "miss") return RefreshReason::miss;
  if (why == "ahead") return RefreshReason::ahead;
  // A rebuild is of a whole namespace: {"op":"rebuild"} on the writer's socket.
  throw py::value_error("reason '" + why + "' is not 'forced', 'stale', 'miss' or 'ahead'");
}

}  // namespace

py::object get_or_fetch(const Reader& r, const std::vector<Names>& names, const std::string& ns,
                        const std::string& account, const std::string& instrument, double timeout,
                        bool force) {
  const NamespaceId id = namespace_of(r, ns);
  const std::chrono::nanoseconds wait = wait_timeout(timeout);
  Position p;
  FetchResult res;
  {
    // The strings are this call's own copies: nothing of Python's is touched while it waits.
    py::gil_scoped_release release;
    res = r.get_or_fetch(id, account, instrument, p, wait, force);
  }
  py::object position;
  switch (res.status) {
    case ReadStatus::ok:
    case ReadStatus::stale:
      position = py::reinterpret_steal<py::object>(to_python(names, p));
      if (!position) throw py::error_already_set();
      break;
    case ReadStatus::not_found:
      position = py::none();
      break;
    default:
      raise_read(r, res.status, key_text(ns, account, instrument));
  }
  const auto why = static_cast<std::size_t>(res.reason);
  if (why >= std::size(g_reason_names)) raise(g_error, "unknown fetch reason");
  PyObject* t = PyStructSequence_New(g_fetch_result);
  if (t == nullptr) throw py::error_already_set();
  PyStructSequence_SetItem(t, 0, position.release().ptr());  // steals
  PyStructSequence_SetItem(t, 1, Py_NewRef(g_reason_names[why]));
  return py::reinterpret_steal<py::object>(t);
}

std::string request(const Reader& r, const std::string& ns, const std::string& account,
                    const std::string& instrument, const std::string& reason) {
  const NamespaceId id = namespace_of(r, ns);
  const RequestStatus s = r.request(id, account, instrument, reason_of(reason));
  if (s == RequestStatus::bad_key) {
    throw py::value_error("bad key " + key_text(ns, account, instrument) +
                          ": a part is empty or longer than 64 bytes");
  }
  return std::string(to_string(s));
}

py::dict pending(const Reader& r, const std::string& ns, const std::string& account,
                 const std::string& instrument) {
  const NamespaceId id = namespace_of(r, ns);
  if (account.empty() || account.size() > kMaxAccountLen || instrument.empty() ||
      instrument.size() > kMaxInstrumentLen) {
    throw py::value_error("bad key " + key_text(ns, account, instrument) +
                          ": a part is empty or longer than 64 bytes");
  }
  const PendingInfo info = r.pending(id, account, instrument);
  py::dict d;
  d["state"] = py::str(std::string(to_string(info.state)));
  d["reason"] = py::str(std::string(to_string(info.reason)));
  d["since_ns"] = info.since_ns;
  return d;
}

py::object refresh_stats(const Reader& r) {
  const std::optional<RefreshStats> s = r.refresh_stats();
  if (!s) return py::none();
  py::dict requests;  // by reason (index 0 is no reason)
  for (int i = 1; i < static_cast<int>(std::size(s->requests)); ++i)
    requests[py::str(std::string(to_string(static_cast<RefreshReason>(i))))] = s->requests[i];
  py::dict outcomes;  // by state (index 0, none, is never an outcome)
  for (int i = 1; i < static_cast<int>(std::size(s->outcomes)); ++i)
    outcomes[py::str(std::string(to_string(static_cast<PendingState>(i))))] = s->outcomes[i];
  py::dict d;
  d["requests"] = requests;
  d["deduplicated"] = s->deduplicated;
  d["in_flight"] = s->in_flight;
  d["outcomes"] = outcomes;
  d["errors"] = s->errors;
  d["timeouts"] = s->timeouts;
  d["refused"] = s->refused;
  d["bad_requests"] = s->bad_requests;
  d["refreshers"] = s->refreshers;
  d["ring_full"] = s->ring_full;
  d["rebuilds_running"] = s->rebuilds_running;
  d["rebuild_positions"] = s->rebuild_positions;
  return d;
}

void add_refresh_types(py::module_& m) {
  g_fetch_result = PyStructSequence_NewType(&g_fetch_desc);
  if (g_fetch_result == nullptr) throw py::error_already_set();
  m.attr("FetchResult") = py::handle(reinterpret_cast<PyObject*>(g_fetch_result));
  for (std::size_t i = 0; i < std::size(g_reason_names); ++i) {
    const std::string name(to_string(static_cast<FetchReason>(i)));
    g_reason_names[i] = PyUnicode_InternFromString(name.c_str());
    if (g_reason_names[i] == nullptr) throw py::error_already_set();
  }
}

}  // namespace poscache::python
