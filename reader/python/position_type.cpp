#include "reader/python/position_type.hpp"

#include <structmember.h>

#include <bit>
#include <cstring>
#include <memory>

#include "poscache/format.hpp"

namespace poscache::python {

namespace {

// What a Position needs of its namespace's schema to build its values; a capsule's content.
struct Schema {
  std::vector<FieldSpec> fields;
  std::vector<std::size_t> slot;  // each field's first value slot (field_slot())
  std::vector<PyObject*> names;   // each field's name, a str (owned)
};

constexpr const char* kSchemaCapsule = "poscache.Schema";

void schema_destroy(PyObject* capsule) {
  auto* s = static_cast<Schema*>(PyCapsule_GetPointer(capsule, kSchemaCapsule));
  for (PyObject* n : s->names) Py_DECREF(n);
  delete s;
}

struct PositionObject {
  PyObject_HEAD PyObject* ns;
  PyObject* account;
  PyObject* instrument;
  PyObject* fields;  // dict: field name -> Decimal (int, str); null until first asked for
  PyObject* schema;  // the namespace's Schema capsule
  PyObject* status;  // 'ok' or 'stale'
  unsigned long long version, source_seq;
  long long created_at_ns, updated_at_ns, age_ns;
  std::uint32_t fields_set;
  char stale;
  // The value slots as read (Position::values), kept as bytes: the object's memory is only
  // 8-byte aligned for certain, an int128 wants 16.
  unsigned char values[sizeof(int128) * kMaxFields];
};

PyTypeObject* g_position_type = nullptr;
PyObject* g_decimal = nullptr;  // decimal.Decimal
PyObject* g_ok = nullptr;
PyObject* g_stale = nullptr;

const Schema& schema_of(const PositionObject* p) {
  return *static_cast<const Schema*>(PyCapsule_GetPointer(p->schema, kSchemaCapsule));
}

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

// Field f's value as Python sees it (a new reference): Decimal, int or str.
PyObject* value_of(const Schema& s, const int128* values, std::size_t f) {
  const FieldSpec& spec = s.fields[f];
  if (spec.type == FieldType::decimal) {
    char buf[64];
    const std::size_t len = format_decimal(values[f], spec.scale, buf);
    // The text is ASCII: a compact str filled directly, no UTF-8 decoding.
    PyObject* text = PyUnicode_New(static_cast<Py_ssize_t>(len), 127);
    if (text == nullptr) return nullptr;
    std::memcpy(PyUnicode_1BYTE_DATA(text), buf, len);
    PyObject* v = new_decimal(text);  // exact: from its text
    Py_DECREF(text);
    return v;
  }
  if (spec.type == FieldType::text) {
    const std::string_view t = text_in(values, s.slot[f], spec.length);  // valid UTF-8
    return PyUnicode_DecodeUTF8(t.data(), static_cast<Py_ssize_t>(t.size()), "strict");
  }
  return PyLong_FromLongLong(static_cast<long long>(values[f]));
}

void copy_values(const PositionObject* p, int128 (&out)[kMaxFields]) {
  std::memcpy(out, p->values, sizeof out);
}

// The fields dict, built on first use (a borrowed reference), or null with an error set.
PyObject* fields_of(PositionObject* p) {
  if (p->fields != nullptr) return p->fields;
  const Schema& s = schema_of(p);
  int128 values[kMaxFields];
  copy_values(p, values);
  // Sized for the fields present: a dict grown from empty resizes at its sixth entry.
  PyObject* fields = _PyDict_NewPresized(std::popcount(p->fields_set));
  if (fields == nullptr) return nullptr;
  for (std::size_t f = 0; f < s.fields.size(); ++f) {
    if (((p->fields_set >> f) & 1u) == 0) continue;
    PyObject* v = value_of(s, values, f);
    if (v == nullptr || PyDict_SetItem(fields, s.names[f], v) != 0) {
      Py_XDECREF(v);
      Py_DECREF(fields);
      return nullptr;
    }
    Py_DECREF(v);
  }
  p->fields = fields;
  return fields;
}

PyObject* position_fields(PyObject* self, void*) {
  PyObject* f = fields_of(reinterpret_cast<PositionObject*>(self));
  return Py_XNewRef(f);
}

// The index of the field named `key` if the position holds a value for it, else -1 (with an
// error set if `key` is not a str).
Py_ssize_t held_field(const PositionObject* p, PyObject* key) {
  if (!PyUnicode_Check(key)) {
    PyErr_Format(PyExc_TypeError, "a field name is a str, not %s", Py_TYPE(key)->tp_name);
    return -1;
  }
  const Schema& s = schema_of(p);
  for (std::size_t f = 0; f < s.names.size(); ++f) {
    if (s.names[f] != key && PyUnicode_Compare(s.names[f], key) != 0) continue;
    return ((p->fields_set >> f) & 1u) != 0 ? static_cast<Py_ssize_t>(f) : -1;
  }
  return -1;
}

// name in pos: whether the position holds a value for that field (nothing is built).
int position_contains(PyObject* self, PyObject* key) {
  auto* p = reinterpret_cast<PositionObject*>(self);
  if (p->fields != nullptr && PyUnicode_Check(key)) return PyDict_Contains(p->fields, key);
  const Py_ssize_t f = held_field(p, key);
  return f >= 0 ? 1 : PyErr_Occurred() ? -1 : 0;
}

// pos[name]: one field's value, built alone; KeyError naming the field if the position has no
// value for it (or the namespace no such field).
PyObject* position_subscript(PyObject* self, PyObject* key) {
  auto* p = reinterpret_cast<PositionObject*>(self);
  if (p->fields != nullptr && PyUnicode_Check(key)) {
    PyObject* v = PyDict_GetItemWithError(p->fields, key);
    if (v != nullptr) return Py_NewRef(v);
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
    return nullptr;
  }
  const Py_ssize_t f = held_field(p, key);
  if (f < 0) {
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
    return nullptr;
  }
  int128 values[kMaxFields];
  copy_values(p, values);
  return value_of(schema_of(p), values, static_cast<std::size_t>(f));
}

void position_dealloc(PyObject* self) {
  auto* p = reinterpret_cast<PositionObject*>(self);
  Py_XDECREF(p->ns);
  Py_XDECREF(p->account);
  Py_XDECREF(p->instrument);
  Py_XDECREF(p->fields);
  Py_XDECREF(p->schema);
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
  PyObject* fields = fields_of(p);
  if (fields == nullptr) return nullptr;
  return PyUnicode_FromFormat("<Position %U:%U:%U %R version %llu%s>", p->ns, p->account,
                              p->instrument, fields, p->version, p->stale ? " stale" : "");
}

PyMemberDef g_position_members[] = {
    {"ns", T_OBJECT_EX, offsetof(PositionObject, ns), READONLY, "namespace"},
    {"account", T_OBJECT_EX, offsetof(PositionObject, account), READONLY, nullptr},
    {"instrument", T_OBJECT_EX, offsetof(PositionObject, instrument), READONLY, nullptr},
    {"status", T_OBJECT_EX, offsetof(PositionObject, status), READONLY, "'ok' or 'stale'"},
    {"stale", T_BOOL, offsetof(PositionObject, stale), READONLY, nullptr},
    {"version", T_ULONGLONG, offsetof(PositionObject, version), READONLY, nullptr},
    {"source_seq", T_ULONGLONG, offsetof(PositionObject, source_seq), READONLY, nullptr},
    {"created_at_ns", T_LONGLONG, offsetof(PositionObject, created_at_ns), READONLY, nullptr},
    {"updated_at_ns", T_LONGLONG, offsetof(PositionObject, updated_at_ns), READONLY, nullptr},
    {"age_ns", T_LONGLONG, offsetof(PositionObject, age_ns), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyGetSetDef g_position_getset[] = {
    {"fields", position_fields, nullptr,
     "field name -> Decimal (int for int64 and timestamp fields, str for text); absent fields "
     "are not there. Built on first use, then kept",
     nullptr},
    {"age", position_age, nullptr, "seconds since the last change", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot g_position_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(position_dealloc)},
    {Py_tp_repr, reinterpret_cast<void*>(position_repr)},
    {Py_tp_members, g_position_members},
    {Py_tp_getset, g_position_getset},
    {Py_mp_subscript, reinterpret_cast<void*>(position_subscript)},
    {Py_sq_contains, reinterpret_cast<void*>(position_contains)},
    {Py_tp_doc, const_cast<char*>("a position as read: a copy, exact values; pos['qty'] builds "
                                  "one field, pos.fields all of them")},
    {0, nullptr}};

PyType_Spec g_position_spec = {"poscache.Position", sizeof(PositionObject), 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                               g_position_slots};

}  // namespace

Names make_names(const NamespaceInfo& ns) {
  auto s = std::make_unique<Schema>();
  s->fields = ns.fields;
  for (std::size_t f = 0; f < ns.fields.size(); ++f) {
    s->slot.push_back(field_slot(ns.fields, f));
    PyObject* name = PyUnicode_InternFromString(ns.fields[f].name.c_str());
    if (name == nullptr) {
      for (PyObject* n : s->names) Py_DECREF(n);
      throw py::error_already_set();
    }
    s->names.push_back(name);
  }
  PyObject* capsule = PyCapsule_New(s.get(), kSchemaCapsule, schema_destroy);
  if (capsule == nullptr) {
    for (PyObject* n : s->names) Py_DECREF(n);
    throw py::error_already_set();
  }
  s.release();  // the capsule owns it now
  return Names{py::str(ns.name), py::reinterpret_steal<py::object>(capsule)};
}

PyObject* to_python(const std::vector<Names>& names, const Position& p, PyObject* account,
                    PyObject* instrument) {
  const Names& n = names[p.ns];
  auto* o = reinterpret_cast<PositionObject*>(g_position_type->tp_alloc(g_position_type, 0));
  if (o == nullptr) return nullptr;
  o->fields = nullptr;
  o->schema = Py_NewRef(n.schema.ptr());
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
  o->fields_set = p.fields_set;
  std::memcpy(o->values, p.values, sizeof o->values);
  if (o->account == nullptr || o->instrument == nullptr) {
    Py_DECREF(reinterpret_cast<PyObject*>(o));
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(o);
}

py::list to_python_list(const std::vector<Names>& names, const std::vector<Position>& ps) {
  py::list out;
  for (const Position& p : ps) {
    PyObject* o = to_python(names, p);
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
