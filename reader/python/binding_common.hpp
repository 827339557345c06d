// What the Python module's files share: its exception types (created at import), raising one,
// decimal.Decimal, a timeout in seconds as nanoseconds; and the Producer binding's entry.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <string>

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

}  // namespace poscache::python
