// What the Python module's files share: its exception types (created at import), raising one,
// decimal.Decimal, a timeout in seconds as nanoseconds; the Producer binding's entry, and the
// Reader's read-through (refresh_binding.cpp).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <string>
#include <vector>

#include "poscache/reader.hpp"

namespace poscache::python {

namespace py = pybind11;

extern PyObject* g_error;        // poscache.Error
extern PyObject* g_writer_busy;  // poscache.WriterBusy
extern PyObject* g_writer_dead;  // poscache.WriterDead
extern PyObject* g_retired;      // poscache.Retired
extern PyObject* g_full;         // poscache.Full
extern PyObject* g_no_redis;     // poscache.NoRedis

// Sets `type` with `message` and throws it to pybind11.
[[noreturn]] void raise(PyObject* type, const std::string& message);

// decimal.Decimal, looked up once.
py::object& decimal_type();

std::chrono::nanoseconds seconds(double s);

// Adds poscache.Producer (producer_binding.cpp).
void add_producer(py::module_& m);

// --- the Reader's read-through (refresh_binding.cpp; the asyncio forms: poscache/aio.py) ------
struct Names;  // position_type.hpp
// Adds poscache.FetchResult.
void add_refresh_types(py::module_& m);
// Reader.get_or_fetch: a FetchResult (position or None, reason); waits without the GIL. Raises
// as Reader.get does (ValueError, WriterBusy, WriterDead, Retired).
py::object get_or_fetch(const Reader& r, const std::vector<Names>& names, const std::string& ns,
                        const std::string& account, const std::string& instrument, double timeout,
                        bool force);
// Reader.request: what it did ("asked", "pending", ...); ValueError for a bad key or reason.
std::string request(const Reader& r, const std::string& ns, const std::string& account,
                    const std::string& instrument, const std::string& reason);
// Reader.pending: {"state", "reason", "since_ns"}.
py::dict pending(const Reader& r, const std::string& ns, const std::string& account,
                 const std::string& instrument);
// Reader.refresh_stats: the writer's read-through counters as a dict; None without a channel.
py::object refresh_stats(const Reader& r);

// --- the Reader's calls that build many objects (reads_binding.cpp) ---------------------------
// Reader.get_many: a Position or None per (ns, account, instrument), in order.
py::list get_many(const Reader& r, const std::vector<Names>& names, const py::sequence& keys);
// Reader.stats: the segment's counters and the writer's liveness as a dict.
py::dict stats(const Reader& r);
// Reader.changes: (status, next, [change dicts]); `buffer` is reused between calls.
py::tuple changes(const Reader& r, const std::vector<Names>& names, std::uint64_t from,
                  std::size_t max, std::vector<Change>& buffer);

}  // namespace poscache::python
