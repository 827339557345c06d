// The Reader's calls that build many Python objects at once (get_many, stats, changes): the
// module's Reader class (poscache_module.cpp) checks it is open, then calls these.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "poscache/counters.hpp"
#include "poscache/reader.hpp"
#include "reader/python/binding_common.hpp"
#include "reader/python/position_type.hpp"

namespace poscache::python {

// get_many([(ns, account, instrument), ...]): a list with a Position or None per key, in
// order; the misses of the lookups overlap (Reader::get_many). The keys are checked first, so
// bad input raises before anything is read; a key the writer keeps busy or died writing
// raises as get() does, naming it.
py::list get_many(const Reader& r, const std::vector<Names>& names, const py::sequence& keys) {
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
    const auto id = r.namespace_id(part[0]);
    if (!id) {
      throw py::value_error("get_many(): key " + std::to_string(k) + ": segment '" +
                            r.segment_name() + "' has no namespace '" + std::string(part[0]) + "'");
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
  r.get_many(ks, out, st);
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
        PyObject* o = to_python(names, out[k], PyTuple_GET_ITEM(t, 1), PyTuple_GET_ITEM(t, 2));
        if (o == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(k), o);
        break;
      }
      case ReadStatus::not_found:
        if (auto a = validate_account(ks[k].account); !a)
          throw py::value_error("get_many(): key " + std::to_string(k) + ": " + a.error());
        if (auto i = validate_instrument(ks[k].instrument); !i)
          throw py::value_error("get_many(): key " + std::to_string(k) + ": " + i.error());
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
              "segment '" + r.segment_name() + "' was re-created by its writer: call follow()");
    }
  }
  return result;
}

py::dict stats(const Reader& r) {
  const SegmentStats s = r.stats();
  py::dict d;
  d["segment"] = s.segment;
  d["generation"] = s.generation;
  d["state"] = s.state;
  d["capacity"] = s.capacity;
  d["change_seq"] = s.change_seq;
  for (const CounterField& c : kCounterFields) d[py::str(std::string(c.name))] = s.*(c.member);
  py::dict per_ns;  // live positions by namespace name
  for (const auto& n : r.namespaces())
    per_ns[py::str(n.name)] = n.id < s.namespace_live.size() ? s.namespace_live[n.id] : 0;
  d["namespace_live"] = per_ns;
  d["counting"] = r.counting();  // this Reader's gets counted in the reader table
  if (!r.counting()) d["not_counting_because"] = r.not_counting_because();
  const WriterInfo w = r.writer();
  d["writer_pid"] = w.pid;
  d["writer_alive"] = w.alive;
  d["heartbeat_age_ns"] = w.heartbeat_age_ns;
  return d;
}

// (status, next, [change dicts]): Reader::changes. A change is a dict: position, kind,
// namespace (None for a pattern over every namespace), account, instrument, pattern (those
// that apply), version, at_ns.
py::tuple changes(const Reader& r, const std::vector<Names>& names, std::uint64_t from,
                  std::size_t max, std::vector<Change>& buffer) {
  const ChangesResult res = r.changes(from, buffer, max);
  py::list out;
  for (const Change& c : buffer) {
    py::dict d;
    d["position"] = c.position;
    d["kind"] = py::str(std::string(to_string(c.kind)));
    d["namespace"] =
        c.ns == kAnyNamespace || c.ns >= names.size() ? py::object(py::none()) : names[c.ns].ns;
    if (c.account_len > 0) d["account"] = py::str(std::string(c.account_view()));
    if (c.instrument_len > 0) d["instrument"] = py::str(std::string(c.instrument_view()));
    if (c.pattern_len > 0) d["pattern"] = py::str(std::string(c.pattern_view()));
    d["version"] = c.version;
    d["at_ns"] = c.at_ns;
    out.append(std::move(d));
  }
  return py::make_tuple(py::str(std::string(to_string(res.status))), res.next, out);
}

}  // namespace poscache::python
