#include "reader/python/position_type.hpp"

#include <structmember.h>

#include <bit>
#include <cstring>

#include "poscache/format.hpp"

namespace poscache::python {

namespace {

struct PositionObject {
  PyObject_HEAD PyObject* ns;
  PyObject* account;
  PyObject* instrument;
  PyObject* fields;  // dict: field name -> Decimal (int for int64 and timestamp fields)
  PyObject* status;  // 'ok' or 'stale'
  unsigned long long version, source_seq;
  long long created_at_ns, updated_at_ns, age_ns;
  char stale;
};

PyTypeObject* g_position_type = nullptr;
PyObject* g_decimal = nullptr;  // decimal.Decimal
PyObject* g_ok = nullptr;
PyObject* g_stale = nullptr;

// decimal.Decimal(text), through the type's tp_new: a call of the type would build the same
// argument tuple, then call tp_new, then Decimal's inherited object.__init__, which does nothing.
PyObject* new_decimal(PyObject* text) {
  auto* type = reinterpret_cast<PyTypeObject*>(g_decimal);
  PyObject* args = PyTuple_Pack(1, text);
  if (args == nullptr) return nullptr;
  PyObject* v = type->tp_new(type, args, nullptr);
  Py_DECREF(args);
  return v;
}

void position_dealloc(PyObject* self) {
  auto* p = reinterpret_cast<PositionObject*>(self);
  Py_XDECREF(p->ns);
  Py_XDECREF(p->account);
  Py_XDECREF(p->instrument);
  Py_XDECREF(p->fields);
  Py_XDECREF(p->status);
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);  // a heap type's instances hold a reference to it
}

PyObject* position_age(PyObject* self, void*) {
  return PyFloat_FromDouble(static_cast<double>(reinterpret_cast<PositionObject*>(self)->age_ns) /
                            1e9);
}

PyObject* position_repr(PyObject* self) {
  auto* p = reinterpret_cast<PositionObject*>(self);
  return PyUnicode_FromFormat("<Position %U:%U:%U %R version %llu%s>", p->ns, p->account,
                              p->instrument, p->fields, p->version, p->stale ? " stale" : "");
}

PyMemberDef g_position_members[] = {
    {"ns", T_OBJECT_EX, offsetof(PositionObject, ns), READONLY, "namespace"},
    {"account", T_OBJECT_EX, offsetof(PositionObject, account), READONLY, nullptr},
    {"instrument", T_OBJECT_EX, offsetof(PositionObject, instrument), READONLY, nullptr},
    {"fields", T_OBJECT_EX, offsetof(PositionObject, fields), READONLY,
     "field name -> Decimal (int for int64 and timestamp fields); absent fields are not there"},
    {"status", T_OBJECT_EX, offsetof(PositionObject, status), READONLY, "'ok' or 'stale'"},
    {"stale", T_BOOL, offsetof(PositionObject, stale), READONLY, nullptr},
    {"version", T_ULONGLONG, offsetof(PositionObject, version), READONLY, nullptr},
    {"source_seq", T_ULONGLONG, offsetof(PositionObject, source_seq), READONLY, nullptr},
    {"created_at_ns", T_LONGLONG, offsetof(PositionObject, created_at_ns), READONLY, nullptr},
    {"updated_at_ns", T_LONGLONG, offsetof(PositionObject, updated_at_ns), READONLY, nullptr},
    {"age_ns", T_LONGLONG, offsetof(PositionObject, age_ns), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyGetSetDef g_position_getset[] = {
    {"age", position_age, nullptr, "seconds since the last change", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot g_position_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(position_dealloc)},
    {Py_tp_repr, reinterpret_cast<void*>(position_repr)},
    {Py_tp_members, g_position_members},
    {Py_tp_getset, g_position_getset},
    {Py_tp_doc, const_cast<char*>("a position as read: a copy, exact values")},
    {0, nullptr}};

PyType_Spec g_position_spec = {"poscache.Position", sizeof(PositionObject), 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                               g_position_slots};

}  // namespace

PyObject* to_python(const Reader& r, const std::vector<Names>& names, const Position& p,
                    PyObject* account, PyObject* instrument) {
  const NamespaceInfo& ns = r.namespace_info(p.ns);
  const Names& n = names[p.ns];
  // Sized for the fields present: a dict grown from empty resizes at its sixth entry.
  PyObject* fields = _PyDict_NewPresized(std::popcount(p.fields_set));
  if (fields == nullptr) return nullptr;
  char buf[64];
  for (std::size_t f = 0; f < ns.fields.size(); ++f) {
    if (!p.has(f)) continue;
    const FieldSpec& spec = ns.fields[f];
    PyObject* v;
    if (spec.type == FieldType::decimal) {
      const std::size_t len = format_decimal(p.values[f], spec.scale, buf);
      // The text is ASCII: a compact str filled directly, no UTF-8 decoding.
      PyObject* text = PyUnicode_New(static_cast<Py_ssize_t>(len), 127);
      if (text != nullptr) std::memcpy(PyUnicode_1BYTE_DATA(text), buf, len);
      if (text == nullptr) {
        Py_DECREF(fields);
        return nullptr;
      }
      v = new_decimal(text);  // exact: from its text
      Py_DECREF(text);
    } else if (spec.type == FieldType::text) {
      const std::string_view t = p.text(field_slot(ns.fields, f), spec.length);  // valid UTF-8
      v = PyUnicode_DecodeUTF8(t.data(), static_cast<Py_ssize_t>(t.size()), "strict");
    } else {
      v = PyLong_FromLongLong(static_cast<long long>(p.values[f]));
    }
    if (v == nullptr || PyDict_SetItem(fields, n.fields[f].ptr(), v) != 0) {
      Py_XDECREF(v);
      Py_DECREF(fields);
      return nullptr;
    }
    Py_DECREF(v);
  }
  auto* o = reinterpret_cast<PositionObject*>(g_position_type->tp_alloc(g_position_type, 0));
  if (o == nullptr) {
    Py_DECREF(fields);
    return nullptr;
  }
  o->fields = fields;
  o->ns = Py_NewRef(n.ns.ptr());
  o->account = account ? Py_NewRef(account) : PyUnicode_FromStringAndSize(p.account, p.account_len);
  o->instrument = instrument ? Py_NewRef(instrument)
                             : PyUnicode_FromStringAndSize(p.instrument, p.instrument_len);
  o->status = Py_NewRef(p.stale ? g_stale : g_ok);
  o->stale = p.stale ? 1 : 0;
  o->version = p.version;
  o->source_seq = p.source_seq;
  o->created_at_ns = p.created_at_ns;
  o->updated_at_ns = p.updated_at_ns;
  o->age_ns = p.age_ns;
  if (o->account == nullptr || o->instrument == nullptr) {
    Py_DECREF(reinterpret_cast<PyObject*>(o));
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(o);
}

py::list to_python_list(const Reader& r, const std::vector<Names>& names,
                        const std::vector<Position>& ps) {
  py::list out;
  for (const Position& p : ps) {
    PyObject* o = to_python(r, names, p);
    if (o == nullptr) throw py::error_already_set();
    out.append(py::reinterpret_steal<py::object>(o));
  }
  return out;
}

void add_position_type(py::module_& m, const py::object& decimal) {
  g_decimal = decimal.ptr();  // kept for the life of the process (the caller's static)
  g_ok = PyUnicode_InternFromString("ok");
  g_stale = PyUnicode_InternFromString("stale");
  g_position_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&g_position_spec));
  if (g_position_type == nullptr) throw py::error_already_set();
  m.attr("Position") = py::handle(reinterpret_cast<PyObject*>(g_position_type));
}

}  // namespace poscache::python
