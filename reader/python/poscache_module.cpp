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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
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
      : reader_(open(segment, options(writer_silent_after))) {
    name_all();
  }

  // --- closing ---------------------------------------------------------------------------------
  // close() unmaps the segment and gives back the reader table's record; any later use raises
  // ValueError, as a closed file does. A wait in another thread ends at its next slice with that
  // error, and the mapping goes when the last such call has left it. Closing twice is harmless.
  void close() {
    closing_ = true;
    if (in_use_ == 0) reader_.reset();
  }
  bool closed() const noexcept { return closing_; }
  // The Reader, or ValueError if closed.
  const Reader& live() const {
    if (closing_) throw py::value_error("the Reader of segment '" + name_ + "' is closed");
    return *reader_;
  }

  // get(ns, account, instrument): written against the CPython API (vectorcall; see reader_get).
  // A new reference: the Position, None if there is none; null with an exception set.
  PyObject* get(PyObject* ns, PyObject* account, PyObject* instrument) const {
    if (closing_) {
      PyErr_Format(PyExc_ValueError, "the Reader of segment '%s' is closed", name_.c_str());
      return nullptr;
    }
    const Reader& r_ = *reader_;
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
        if (!key_parts_valid(av, iv)) return nullptr;  // a key no writer takes: say which part
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

  py::list get_many(const py::sequence& keys) const {
    return python::get_many(live(), names_, keys);
  }

  py::list positions_of(const std::string& account) const {
    const Reader& r = live();
    check_account(account);
    py::list out = to_python_list(names_, r.positions_of(account));
    if (r.retired()) raise_retired(r);
    return out;
  }

  // Every position of the account as of one moment (Reader::snapshot); [] if it has none.
  py::list snapshot(const std::string& account) const {
    const Reader& r_ = live();
    check_account(account);
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
    const Reader& r_ = live();
    if (account) check_account(*account);
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
    // A retired segment's slots are the old generation's: not an answer about the segment now.
    if (r_.retired()) raise_retired(r_);
    return to_python_list(names_, found);
  }

  py::dict stats() const { return python::stats(live()); }

  std::vector<std::string> namespaces() const {
    const Reader& r_ = live();
    std::vector<std::string> out;
    for (const auto& n : r_.namespaces()) out.push_back(n.name);
    return out;
  }

  std::uint64_t change_sequence() const { return live().change_sequence(); }

  bool wait_for_change(std::uint64_t seen, double timeout) {
    return wait_in_slices("wait_for_change", timeout,
                          [seen](const Reader& r, std::chrono::nanoseconds slice) {
                            return r.wait_for_change(seen, slice);
                          });
  }

  std::uint64_t change_position() const { return live().change_position(); }

  py::tuple changes(std::uint64_t from, std::size_t max) const {
    return python::changes(live(), names_, from, max, changes_);
  }

  bool wait_for_changes(std::uint64_t from, double timeout) {
    return wait_in_slices("wait_for_changes", timeout,
                          [from](const Reader& r, std::chrono::nanoseconds slice) {
                            return r.wait_for_changes(from, slice);
                          });
  }

  // --- read-through (refresh_binding.cpp; the asyncio forms are poscache/aio.py's) ----------
  py::object get_or_fetch(const std::string& ns, const std::string& account,
                          const std::string& instrument, double timeout, bool force) {
    const Reader& r = live();
    InUse use(*this);  // it waits without the GIL: a close() meanwhile waits for it
    return python::get_or_fetch(r, names_, ns, account, instrument, timeout, force);
  }
  std::string request(const std::string& ns, const std::string& account,
                      const std::string& instrument, const std::string& reason) const {
    return python::request(live(), ns, account, instrument, reason);
  }
  py::dict pending(const std::string& ns, const std::string& account,
                   const std::string& instrument) const {
    return python::pending(live(), ns, account, instrument);
  }
  py::object refresh_stats() const { return python::refresh_stats(live()); }
  bool refresh_available() const { return live().refresh_available(); }
  std::string refresh_unavailable_because() const { return live().refresh_unavailable_because(); }

  bool follow() {
    live();
    const FollowResult f = reader_->follow();
    if (f == FollowResult::reattached) name_all();  // a new generation may have new schemas
    return f != FollowResult::unavailable;
  }

 private:
  void name_all() {
    name_ = reader_->segment_name();
    names_.clear();
    for (const NamespaceInfo& ns : reader_->namespaces()) names_.push_back(python::make_names(ns));
  }

  // A call that uses the Reader without the GIL: close() leaves the mapping to the last one.
  struct InUse {
    explicit InUse(PyReader& r) : owner(r) { ++owner.in_use_; }
    ~InUse() {
      if (--owner.in_use_ == 0 && owner.closing_) owner.reader_.reset();
    }
    InUse(const InUse&) = delete;
    InUse& operator=(const InUse&) = delete;
    PyReader& owner;
  };

  // Waits up to `timeout` seconds (inf: without end) in slices of at most 50 ms, the GIL
  // released in each: between two, signals are handled (Ctrl-C raises KeyboardInterrupt within
  // a slice, not when the wait ends) and a close() from another thread ends the wait.
  // `wait(reader, slice)` is true once what is waited for happened.
  template <class Wait>
  bool wait_in_slices(const char* what, double timeout, Wait wait) {
    if (std::isnan(timeout) || timeout < 0) {
      throw py::value_error(std::string(what) +
                            "(): timeout=" + py::repr(py::float_(timeout)).cast<std::string>() +
                            " is not a number of seconds >= 0 (inf waits without end)");
    }
    const Reader& r = live();
    InUse use(*this);
    constexpr std::chrono::nanoseconds kSlice = std::chrono::milliseconds(50);
    const bool forever = std::isinf(timeout);
    const auto deadline = std::chrono::steady_clock::now() +
                          (forever ? std::chrono::nanoseconds(0) : seconds(std::min(timeout, 1e9)));
    for (;;) {
      const auto left = deadline - std::chrono::steady_clock::now();
      const std::chrono::nanoseconds slice =
          forever ? kSlice
                  : std::clamp(std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                               std::chrono::nanoseconds(0), kSlice);
      bool happened = false;
      {
        py::gil_scoped_release release;
        happened = wait(r, slice);
      }
      if (happened) return true;
      if (closing_) live();  // raises: closed while waiting
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (!forever && std::chrono::steady_clock::now() >= deadline) return false;
    }
  }

  // Whether a key a get() did not find is one the writer takes; if not, ValueError naming the
  // part is set (a ':' or a NUL is no key part: docs/concepts.md) and false returned.
  static bool key_parts_valid(std::string_view account, std::string_view instrument) {
    if (auto a = validate_account(account); !a) {
      PyErr_SetString(PyExc_ValueError, a.error().c_str());
      return false;
    }
    if (auto i = validate_instrument(instrument); !i) {
      PyErr_SetString(PyExc_ValueError, i.error().c_str());
      return false;
    }
    return true;
  }
  static void check_account(const std::string& account) {
    if (auto a = validate_account(account); !a) throw py::value_error(a.error());
  }
  [[noreturn]] static void raise_retired(const Reader& r) {
    raise(g_retired,
          "segment '" + r.segment_name() + "' was re-created by its writer: call follow()");
  }

  std::vector<Names> names_;
  mutable std::vector<Change> changes_;  // changes()'s buffer, reused
  std::string name_;                     // the segment's, for messages once closed
  int in_use_ = 0;                       // calls using the Reader without the GIL (InUse)
  bool closing_ = false;                 // close() was called
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
  std::optional<Reader> reader_;  // empty once closed
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
               "timeout. timeout: seconds >= 0, inf to wait without end (NaN or negative: "
               "ValueError); Ctrl-C interrupts it within 50 ms")
          .def("change_position", &PyReader::change_position,
               "the change ring's head: where a new follower starts")
          .def("changes", &PyReader::changes, py::arg("from_"), py::arg("max") = 4096,
               "(status, next, changes) from ring position `from_`: status 'ok', or 'lapped', "
               "'writer_restarted', 'invalid_position' (read the state again, then follow from "
               "next), 'unavailable', 'retired'")
          .def("wait_for_changes", &PyReader::wait_for_changes, py::arg("from_"),
               py::arg("timeout"),
               "blocks (without the GIL) until the change ring moves past `from_`; False on "
               "timeout. timeout as wait_for_change()'s")
          .def("follow", &PyReader::follow, "maps the segment the writer re-created")
          .def("close", &PyReader::close,
               "unmaps the segment now; any later use raises ValueError (closing twice is "
               "harmless)")
          .def_property_readonly("closed", &PyReader::closed, "whether close() was called")
          .def(
              "__enter__", [](py::object self) { return self; },
              "with poscache.Reader(segment) as r: ... closes it when the block ends")
          .def(
              "__exit__",
              [](PyReader& self, const py::object&, const py::object&, const py::object&) {
                self.close();
                return false;
              },
              py::arg("exc_type"), py::arg("exc"), py::arg("traceback"),
              "closes the Reader; exceptions propagate")
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
