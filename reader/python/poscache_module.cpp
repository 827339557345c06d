// `import poscache`: the reader and the producer for Python (pybind11 from Debian). This is the
// extension module poscache._poscache; the package poscache (reader/python/poscache/) re-exports
// it and carries its type stubs.
//
//   r = poscache.Reader("positions")
//   p = r.get("spot", "wallet1", "SOL")        # a Position, or None if there is none
//   p.fields["qty"]                            # Decimal('12.500000000000000000')
//   p["qty"]                                   # the same, that field alone built
//   prod = poscache.Producer("positions", "py-bot")
//   seq = prod.fill("spot", "wallet1", "SOL", "buy", Decimal("10"), "100.5", fee="0.05",
//                   trade_id="T-1")
//   prod.wait_applied(seq, timeout=1.0)
//
// Decimals cross as exact values: a read gives decimal.Decimal built from the field's exact
// text (int for int64 and timestamp fields); a write takes Decimal, str or int and refuses a
// float (binary floating point cannot carry a decimal exactly). Errors are exceptions naming
// the cause: poscache.Error and its kinds (WriterBusy, WriterDead, Retired, Full, NoRedis),
// ValueError for bad input, TypeError for a float. Blocking calls release the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "poscache/decimal.hpp"
#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "poscache/version.h"
#include "reader/python/binding_common.hpp"
#include "reader/python/position_type.hpp"

namespace py = pybind11;
using namespace poscache;
using python::Names, python::to_python, python::to_python_list, python::add_position_type;

namespace poscache::python {

PyObject* g_error = nullptr;
PyObject* g_writer_busy = nullptr;
PyObject* g_writer_dead = nullptr;
PyObject* g_retired = nullptr;
PyObject* g_full = nullptr;
PyObject* g_no_redis = nullptr;

void raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}

py::object& decimal_type() {
  static py::object* d = new py::object(py::module_::import("decimal").attr("Decimal"));
  return *d;
}

std::chrono::nanoseconds seconds(double s) {
  return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
}

}  // namespace poscache::python

namespace {

using namespace poscache::python;

class PyReader {
 public:
  PyReader(const std::string& segment, std::optional<double> writer_silent_after)
      : r_(open(segment, options(writer_silent_after))) {
    name_all();
  }

  // get(ns, account, instrument): written against the CPython API (vectorcall; see reader_get).
  // A new reference: the Position, None if there is none; null with an exception set.
  PyObject* get(PyObject* ns, PyObject* account, PyObject* instrument) const {
    Py_ssize_t ns_len = 0, a_len = 0, i_len = 0;
    const char* ns_text = PyUnicode_Check(ns) ? PyUnicode_AsUTF8AndSize(ns, &ns_len) : nullptr;
    const char* a_text =
        PyUnicode_Check(account) ? PyUnicode_AsUTF8AndSize(account, &a_len) : nullptr;
    const char* i_text =
        PyUnicode_Check(instrument) ? PyUnicode_AsUTF8AndSize(instrument, &i_len) : nullptr;
    if (ns_text == nullptr || a_text == nullptr || i_text == nullptr) {
      if (!PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "get(ns, account, instrument) takes three str");
      return nullptr;
    }
    const std::string_view nsv(ns_text, static_cast<std::size_t>(ns_len)),
        av(a_text, static_cast<std::size_t>(a_len)), iv(i_text, static_cast<std::size_t>(i_len));
    const auto id = r_.namespace_id(nsv);
    if (!id) {
      PyErr_Format(PyExc_ValueError, "segment '%s' has no namespace '%U'",
                   r_.segment_name().c_str(), ns);
      return nullptr;
    }
    Position p;
    const ReadStatus s = r_.get(*id, av, iv, p);
    switch (s) {
      case ReadStatus::ok:
      case ReadStatus::stale:
        return to_python(names_, p, account, instrument);
      case ReadStatus::not_found:
        Py_RETURN_NONE;
      case ReadStatus::writer_busy:
        PyErr_Format(g_writer_busy, "the writer kept %U:%U:%U mid-write past the retry bound", ns,
                     account, instrument);
        return nullptr;
      case ReadStatus::writer_dead:
        PyErr_Format(g_writer_dead, "the writer died writing %U:%U:%U", ns, account, instrument);
        return nullptr;
      case ReadStatus::bad_key:
        PyErr_Format(PyExc_ValueError, "bad key %U:%U:%U: a part is empty or longer than 64 bytes",
                     ns, account, instrument);
        return nullptr;
      case ReadStatus::retired:
        PyErr_Format(g_retired, "segment '%s' was re-created by its writer: call follow()",
                     r_.segment_name().c_str());
        return nullptr;
    }
    PyErr_SetString(g_error, "unknown read status");
    return nullptr;
  }

  // get_many([(ns, account, instrument), ...]): a list with a Position or None per key, in
  // order; the misses of the lookups overlap (Reader::get_many). The keys are checked first, so
  // bad input raises before anything is read; a key the writer keeps busy or died writing
  // raises as get() does, naming it.
  py::list get_many(const py::sequence& keys) const {
    const std::size_t n = py::len(keys);
    std::vector<py::object> items(n);  // keeps the key strings alive while their views are used
    std::vector<Reader::Key> ks(n);
    for (std::size_t k = 0; k < n; ++k) {
      items[k] = keys[k];
      PyObject* t = items[k].ptr();
      if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
        throw py::type_error("get_many(): key " + std::to_string(k) +
                             " is not a tuple (ns, account, instrument)");
      }
      std::string_view part[3];
      for (int j = 0; j < 3; ++j) {
        PyObject* o = PyTuple_GET_ITEM(t, j);
        Py_ssize_t len = 0;
        const char* text = PyUnicode_Check(o) ? PyUnicode_AsUTF8AndSize(o, &len) : nullptr;
        if (text == nullptr) {
          if (PyErr_Occurred()) throw py::error_already_set();
          throw py::type_error("get_many(): key " + std::to_string(k) + " holds a " +
                               Py_TYPE(o)->tp_name + "; (ns, account, instrument) are three str");
        }
        part[j] = std::string_view(text, static_cast<std::size_t>(len));
      }
      const auto id = r_.namespace_id(part[0]);
      if (!id) {
        throw py::value_error("get_many(): key " + std::to_string(k) + ": segment '" +
                              r_.segment_name() + "' has no namespace '" + std::string(part[0]) +
                              "'");
      }
      if (part[1].empty() || part[1].size() > kMaxAccountLen || part[2].empty() ||
          part[2].size() > kMaxInstrumentLen) {
        throw py::value_error("get_many(): bad key " + std::to_string(k) + " " +
                              std::string(part[0]) + ":" + std::string(part[1]) + ":" +
                              std::string(part[2]) + ": a part is empty or longer than 64 bytes");
      }
      ks[k] = Reader::Key{*id, part[1], part[2]};
    }
    std::vector<Position> out(n);
    std::vector<ReadStatus> st(n);
    r_.get_many(ks, out, st);
    // Named only when a key's answer is an error.
    auto key = [&](std::size_t k) {
      return std::to_string(k) + " " + std::string(ks[k].account) + ":" +
             std::string(ks[k].instrument);
    };
    py::list result(n);
    for (std::size_t k = 0; k < n; ++k) {
      switch (st[k]) {
        case ReadStatus::ok:
        case ReadStatus::stale: {
          PyObject* t = items[k].ptr();
          PyObject* o = to_python(names_, out[k], PyTuple_GET_ITEM(t, 1), PyTuple_GET_ITEM(t, 2));
          if (o == nullptr) throw py::error_already_set();
          PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(k), o);
          break;
        }
        case ReadStatus::not_found:
          PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(k), Py_NewRef(Py_None));
          break;
        case ReadStatus::writer_busy:
          raise(g_writer_busy,
                "get_many(): the writer kept key " + key(k) + " mid-write past the retry bound");
        case ReadStatus::writer_dead:
          raise(g_writer_dead, "get_many(): the writer died writing key " + key(k));
        case ReadStatus::bad_key:
          throw py::value_error("get_many(): bad key " + key(k));
        case ReadStatus::retired:
          raise(g_retired,
                "segment '" + r_.segment_name() + "' was re-created by its writer: call follow()");
      }
    }
    return result;
  }

  py::list positions_of(const std::string& account) const {
    return to_python_list(names_, r_.positions_of(account));
  }

  // Every position of the account as of one moment (Reader::snapshot); [] if it has none.
  py::list snapshot(const std::string& account) const {
    std::vector<Position> ps;
    const ReadStatus s = r_.snapshot(account, ps);
    switch (s) {
      case ReadStatus::ok:
      case ReadStatus::stale:
      case ReadStatus::not_found:
        return to_python_list(names_, ps);
      case ReadStatus::writer_busy:
        raise(g_writer_busy,
              "the writer kept account '" + account + "' changing past the retry bound: retry");
      case ReadStatus::writer_dead:
        raise(g_writer_dead, "the writer died changing account '" + account + "'");
      case ReadStatus::bad_key:
        throw py::value_error("bad account '" + account + "': empty or longer than 64 bytes");
      case ReadStatus::retired:
        raise(g_retired,
              "segment '" + r_.segment_name() + "' was re-created by its writer: call follow()");
    }
    raise(g_error, "unknown read status");
  }

  py::list scan(const std::optional<std::string>& ns, const std::optional<std::string>& account,
                const std::optional<std::string>& glob) const {
    ScanFilter f;
    if (ns) {
      const auto id = r_.namespace_id(*ns);
      if (!id) throw py::value_error("segment has no namespace '" + *ns + "'");
      f.ns = *id;
    }
    f.account = account;
    f.glob = glob;
    std::vector<Position> found;
    r_.scan(f, [&](const Position& p) { found.push_back(p); });
    return to_python_list(names_, found);
  }

  py::dict stats() const {
    const SegmentStats s = r_.stats();
    py::dict d;
    d["segment"] = s.segment;
    d["generation"] = s.generation;
    d["state"] = s.state;
    d["capacity"] = s.capacity;
    d["change_seq"] = s.change_seq;
    for (const CounterField& c : kCounterFields) d[py::str(std::string(c.name))] = s.*(c.member);
    py::dict per_ns;  // live positions by namespace name
    for (const auto& n : r_.namespaces())
      per_ns[py::str(n.name)] = n.id < s.namespace_live.size() ? s.namespace_live[n.id] : 0;
    d["namespace_live"] = per_ns;
    d["counting"] = r_.counting();  // this Reader's gets counted in the reader table
    if (!r_.counting()) d["not_counting_because"] = r_.not_counting_because();
    const WriterInfo w = r_.writer();
    d["writer_pid"] = w.pid;
    d["writer_alive"] = w.alive;
    d["heartbeat_age_ns"] = w.heartbeat_age_ns;
    return d;
  }

  std::vector<std::string> namespaces() const {
    std::vector<std::string> out;
    for (const auto& n : r_.namespaces()) out.push_back(n.name);
    return out;
  }

  std::uint64_t change_sequence() const { return r_.change_sequence(); }

  bool wait_for_change(std::uint64_t seen, double timeout) const {
    py::gil_scoped_release release;
    return r_.wait_for_change(seen, seconds(timeout));
  }

  std::uint64_t change_position() const { return r_.change_position(); }

  // (status, next, [change dicts]): Reader::changes. A change is a dict: position, kind,
  // namespace (None for a pattern over every namespace), account, instrument, pattern (those
  // that apply), version, at_ns.
  py::tuple changes(std::uint64_t from, std::size_t max) const {
    const ChangesResult res = r_.changes(from, changes_, max);
    py::list out;
    for (const Change& c : changes_) {
      py::dict d;
      d["position"] = c.position;
      d["kind"] = py::str(std::string(to_string(c.kind)));
      d["namespace"] =
          c.ns == kAnyNamespace || c.ns >= names_.size() ? py::object(py::none()) : names_[c.ns].ns;
      if (c.account_len > 0) d["account"] = py::str(std::string(c.account_view()));
      if (c.instrument_len > 0) d["instrument"] = py::str(std::string(c.instrument_view()));
      if (c.pattern_len > 0) d["pattern"] = py::str(std::string(c.pattern_view()));
      d["version"] = c.version;
      d["at_ns"] = c.at_ns;
      out.append(std::move(d));
    }
    return py::make_tuple(py::str(std::string(to_string(res.status))), res.next, out);
  }

  bool wait_for_changes(std::uint64_t from, double timeout) const {
    py::gil_scoped_release release;
    return r_.wait_for_changes(from, seconds(timeout));
  }

  // --- read-through (refresh_binding.cpp; the asyncio forms are poscache/aio.py's) ----------
  py::object get_or_fetch(const std::string& ns, const std::string& account,
                          const std::string& instrument, double timeout, bool force) const {
    return python::get_or_fetch(r_, names_, ns, account, instrument, timeout, force);
  }
  std::string request(const std::string& ns, const std::string& account,
                      const std::string& instrument, const std::string& reason) const {
    return python::request(r_, ns, account, instrument, reason);
  }
  py::dict pending(const std::string& ns, const std::string& account,
                   const std::string& instrument) const {
    return python::pending(r_, ns, account, instrument);
  }
  py::object refresh_stats() const { return python::refresh_stats(r_); }
  bool refresh_available() const { return r_.refresh_available(); }
  std::string refresh_unavailable_because() const { return r_.refresh_unavailable_because(); }

  bool follow() {
    const FollowResult f = r_.follow();
    if (f == FollowResult::reattached) name_all();  // a new generation may have new schemas
    return f != FollowResult::unavailable;
  }

 private:
  void name_all() {
    names_.clear();
    for (const NamespaceInfo& ns : r_.namespaces()) names_.push_back(python::make_names(ns));
  }
  std::vector<Names> names_;
  mutable std::vector<Change> changes_;  // changes()'s buffer, reused
  // writer_silent_after: seconds, > 0 and finite; None: the environment's or the default.
  static ReaderOptions options(std::optional<double> writer_silent_after) {
    ReaderOptions o;
    if (writer_silent_after) {
      const double s = *writer_silent_after;
      if (!(s > 0) || s > 86'400)
        throw py::value_error("writer_silent_after=" + py::repr(py::float_(s)).cast<std::string>() +
                              ": give seconds above 0 and at most 86400, or None");
      o.writer_silent_after = seconds(s);
    }
    return o;
  }
  static Reader open(const std::string& segment, const ReaderOptions& o) {
    try {
      return Reader::open(segment, o);
    } catch (const Error& e) {
      raise(g_error, e.what());
    }
  }
  Reader r_;
};

// A name of poscache.aio (pure Python, imported on first use: asyncio with it).
py::object aio(const char* name) {
  return py::module_::import("poscache.aio").attr(name);
}

// pybind11's record of the Reader class, set when the module is imported.
py::detail::type_info* g_reader_info = nullptr;

// Reader.get: METH_FASTCALL, arguments by position or by name (ns=, account=, instrument=).
PyObject* reader_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const kNames[] = {"ns", "account", "instrument"};
  PyObject* a[3] = {nullptr, nullptr, nullptr};
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  if (nargs > 3) {
    PyErr_Format(PyExc_TypeError, "get() takes 3 arguments (%zd given)", nargs + nkw);
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) a[i] = args[i];
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* name = PyTuple_GET_ITEM(kwnames, k);
    int slot = -1;
    for (int j = 0; j < 3; ++j)
      if (PyUnicode_CompareWithASCIIString(name, kNames[j]) == 0) slot = j;
    if (slot < 0 || a[slot] != nullptr) {
      PyErr_Format(PyExc_TypeError, "get() got an unexpected or repeated argument '%U'", name);
      return nullptr;
    }
    a[slot] = args[nargs + k];
  }
  for (int j = 0; j < 3; ++j) {
    if (a[j] == nullptr) {
      PyErr_Format(PyExc_TypeError, "get() missing argument '%s'", kNames[j]);
      return nullptr;
    }
  }
  // The Reader behind `self` through the type record found once at import (py::cast would look
  // it up in pybind11's type map on every call: a hash of the type's name, ~30 ns).
  PyReader* r = nullptr;
  if (PyObject_TypeCheck(self, g_reader_info->type)) {
    auto vh =
        reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder(g_reader_info, false);
    if (vh && vh.holder_constructed()) r = vh.value_ptr<PyReader>();
  }
  if (r == nullptr) {
    PyErr_SetString(PyExc_TypeError, "get() needs an initialized poscache.Reader");
    return nullptr;
  }
  return r->get(a[0], a[1], a[2]);
}

}  // namespace

PYBIND11_MODULE(_poscache, m) {
  // The types are named for the package users import (poscache.Reader, poscache.Error in reprs,
  // tracebacks and signatures), not for this module inside it: pybind11 names a type and an
  // exception after its scope's __name__, so the module answers "poscache" while they are made.
  const py::object import_name = m.attr("__name__");
  m.attr("__name__") = "poscache";
  m.doc() = "poscache: read positions from a shared-memory segment, feed its writer";
  m.attr("__version__") = POSCACHE_VERSION;
  g_error = py::register_exception<Error>(m, "Error", PyExc_RuntimeError).ptr();
  g_writer_busy = PyErr_NewExceptionWithDoc(
      "poscache.WriterBusy", "the slot stayed mid-write past the retry bound", g_error, nullptr);
  g_writer_dead = PyErr_NewExceptionWithDoc(
      "poscache.WriterDead", "the slot is mid-write and the writer's heartbeat stopped", g_error,
      nullptr);
  g_retired = PyErr_NewExceptionWithDoc("poscache.Retired",
                                        "the writer re-created the segment: call Reader.follow()",
                                        g_error, nullptr);
  g_full =
      PyErr_NewExceptionWithDoc("poscache.Full", "the producer's ring is full", g_error, nullptr);
  g_no_redis = PyErr_NewExceptionWithDoc("poscache.NoRedis", "the writer does not mirror to Redis",
                                         g_error, nullptr);
  m.attr("WriterBusy") = py::handle(g_writer_busy);
  m.attr("WriterDead") = py::handle(g_writer_dead);
  m.attr("Retired") = py::handle(g_retired);
  m.attr("Full") = py::handle(g_full);
  m.attr("NoRedis") = py::handle(g_no_redis);

  add_position_type(m, decimal_type());
  python::add_refresh_types(m);

  auto reader =
      py::class_<PyReader>(m, "Reader", "maps a segment read-only; reads never block the writer")
          .def(py::init<const std::string&, std::optional<double>>(), py::arg("segment"),
               py::arg("writer_silent_after") = py::none(),
               "writer_silent_after: seconds the writer may be silent before a read stuck "
               "mid-write asks whether it lives (None: POSCACHE_READER_SILENT_AFTER_MS, else ten "
               "heartbeats and at least 0.1)")
          .def("get_many", &PyReader::get_many, py::arg("keys"),
               "get_many([(ns, account, instrument), ...]): a Position or None per key, in "
               "order, the lookups' misses overlapped")
          .def("positions_of", &PyReader::positions_of, py::arg("account"))
          .def("snapshot", &PyReader::snapshot, py::arg("account"))
          .def("scan", &PyReader::scan, py::arg("namespace") = py::none(),
               py::arg("account") = py::none(), py::arg("glob") = py::none(),
               "every position matching (a walk of the whole table: for tools, not per order)")
          .def("stats", &PyReader::stats)
          .def("namespaces", &PyReader::namespaces)
          .def("change_sequence", &PyReader::change_sequence)
          .def("wait_for_change", &PyReader::wait_for_change, py::arg("seen"), py::arg("timeout"),
               "blocks (without the GIL) until the change sequence moves past `seen`; False on "
               "timeout")
          .def("change_position", &PyReader::change_position,
               "the change ring's head: where a new follower starts")
          .def("changes", &PyReader::changes, py::arg("from_"), py::arg("max") = 4096,
               "(status, next, changes) from ring position `from_`: status 'ok', or 'lapped', "
               "'writer_restarted', 'invalid_position' (read the state again, then follow from "
               "next), 'unavailable', 'retired'")
          .def("wait_for_changes", &PyReader::wait_for_changes, py::arg("from_"),
               py::arg("timeout"),
               "blocks (without the GIL) until the change ring moves past `from_`; False on "
               "timeout")
          .def("follow", &PyReader::follow, "maps the segment the writer re-created")
          .def("get_or_fetch", &PyReader::get_or_fetch, py::arg("ns"), py::arg("account"),
               py::arg("instrument"), py::arg("timeout") = 1.0, py::arg("force") = false,
               "a FetchResult (position, reason): a fresh copy at get()'s cost ('cached'); "
               "otherwise asks the refreshers and waits (without the GIL) up to `timeout` seconds "
               "for the answer, then the copy as it is (stale, or None) and why")
          .def("request", &PyReader::request, py::arg("ns"), py::arg("account"),
               py::arg("instrument"), py::arg("reason") = "forced",
               "asks for a refresh of the key without waiting (no system call): 'asked', "
               "'pending', 'remembered', 'full', 'no_refresher' or 'unavailable'")
          .def("pending", &PyReader::pending, py::arg("ns"), py::arg("account"),
               py::arg("instrument"),
               "what the writer published about the key's last request: {'state', 'reason', "
               "'since_ns'}")
          .def("refresh_stats", &PyReader::refresh_stats,
               "the writer's read-through counters; None without a request channel")
          .def_property_readonly("refresh_available", &PyReader::refresh_available,
                                 "whether this Reader takes part in read-through")
          .def_property_readonly("refresh_unavailable_because",
                                 &PyReader::refresh_unavailable_because,
                                 "why it does not ('' when it does)")
          // The asyncio forms: coroutines of poscache.aio, the waits in the loop's executor.
          .def(
              "get_or_fetch_async",
              [](py::object self, const py::object& ns, const py::object& account,
                 const py::object& instrument, double timeout, bool force) {
                return aio("get_or_fetch")(self, ns, account, instrument, timeout, force);
              },
              py::arg("ns"), py::arg("account"), py::arg("instrument"), py::arg("timeout") = 1.0,
              py::arg("force") = false,
              "get_or_fetch() as a coroutine: the wait runs in the event loop's executor")
          .def(
              "wait_for_change_async",
              [](py::object self, const py::object& seen, double timeout) {
                return aio("wait_for_change")(self, seen, timeout);
              },
              py::arg("seen"), py::arg("timeout"),
              "wait_for_change() as a coroutine: the wait runs in the event loop's executor")
          .def(
              "wait_for_changes_async",
              [](py::object self, const py::object& from, double timeout) {
                return aio("wait_for_changes")(self, from, timeout);
              },
              py::arg("from_"), py::arg("timeout"),
              "wait_for_changes() as a coroutine: the wait runs in the event loop's executor")
          .def(
              "changes_async",
              [](py::object self, const py::object& from_position, const py::object& max) {
                return aio("ChangeStream")(self, from_position, max);
              },
              py::arg("from_position") = py::none(), py::arg("max") = 4096,
              "an async iterator over the changes from `from_position` (None: the ring's head "
              "now), one dict each as changes() gives them; raises poscache.aio.ResyncNeeded "
              "when it cannot follow (lapped, writer_restarted, invalid_position)");
  g_reader_info = py::detail::get_type_info(typeid(PyReader));
  // get() as a vectorcall method of the class, outside pybind11's dispatch (reader_get).
  static PyMethodDef get_def = {
      "get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(reader_get)),
      METH_FASTCALL | METH_KEYWORDS,
      "get(ns, account, instrument): the Position, or None if there is none"};
  PyObject* get_descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(reader.ptr()), &get_def);
  if (get_descr == nullptr || PyObject_SetAttrString(reader.ptr(), "get", get_descr) != 0)
    throw py::error_already_set();
  Py_DECREF(get_descr);

  python::add_producer(m);
  m.attr("__name__") = import_name;
}
