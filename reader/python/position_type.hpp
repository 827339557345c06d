// poscache.Position: the result of Reader.get(), a native type (PyType_FromSpec) with slot
// members, written against the CPython API: get() is the hot path of a Python risk check, and a
// pybind11 instance, its holder and its dispatch cost more than the read itself.
//
// A Position carries the raw values it was read with and builds its Decimals when they are
// first asked for: `pos.fields` builds the whole dict once (then keeps it), `pos["qty"]` builds
// that field alone. A Decimal costs ~150 ns (Python 3.11 builds one only by parsing its text),
// so a risk check that reads two fields of a 7-field holding skips five of them.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

#include "poscache/reader.hpp"

namespace poscache::python {

namespace py = pybind11;

// A namespace's schema as its Positions need it, built once per Reader (and again when it
// follows a new generation). `schema` is a capsule the Positions share: a Position may outlive
// its Reader and the generation it was read from.
struct Names {
  py::object ns;      // the namespace's name
  py::object schema;  // capsule: the field specs and their names (position_type.cpp)
};

// Creates the type and adds it to the module as `Position`; `decimal` is decimal.Decimal.
void add_position_type(py::module_& m, const py::object& decimal);

// The Names of a namespace.
Names make_names(const NamespaceInfo& ns);

// A new Position object (a new reference), or null with a Python error set. `account` and
// `instrument` may be the caller's own str objects (get(): equal text, nothing to build).
PyObject* to_python(const std::vector<Names>& names, const Position& p, PyObject* account = nullptr,
                    PyObject* instrument = nullptr);

// A list of new Position objects.
py::list to_python_list(const std::vector<Names>& names, const std::vector<Position>& ps);

}  // namespace poscache::python
