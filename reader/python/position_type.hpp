// poscache.Position: the result of Reader.get(), a native type (PyType_FromSpec) with slot
// members, written against the CPython API: get() is the hot path of a Python risk check, and a
// pybind11 instance, its holder and its dispatch cost more than the read itself.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

#include "poscache/reader.hpp"

namespace poscache::python {

namespace py = pybind11;

// The Python objects a reader shares between the positions it returns, built once.
struct Names {
  py::object ns;
  std::vector<py::object> fields;
};

// Creates the type and adds it to the module as `Position`; `decimal` is decimal.Decimal.
void add_position_type(py::module_& m, const py::object& decimal);

// A new Position object (a new reference), or null with a Python error set. `account` and
// `instrument` may be the caller's own str objects (get(): equal text, nothing to build).
PyObject* to_python(const Reader& r, const std::vector<Names>& names, const Position& p,
                    PyObject* account = nullptr, PyObject* instrument = nullptr);

// A list of new Position objects.
py::list to_python_list(const Reader& r, const std::vector<Names>& names,
                        const std::vector<Position>& ps);

}  // namespace poscache::python
