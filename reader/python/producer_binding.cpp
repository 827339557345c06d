// poscache.Producer: a ring of this process's attached to the writer, with the ingest command
// set. Values are Decimal, str or int, crossing as their exact text; a float is refused.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "poscache/producer.hpp"
#include "reader/python/binding_common.hpp"

namespace poscache::python {

namespace {

// A value for a field: Decimal, str or int as text; a float (or a bool) is refused.
std::string value_text(const std::string& what, const py::handle& v) {
  if (PyBool_Check(v.ptr()))
    throw py::type_error(what + ": a bool is not a number; give a Decimal, a str or an int");
  if (PyFloat_Check(v.ptr())) {
    throw py::type_error(what + ": " + py::str(v).cast<std::string>() +
                         " is a float; give a Decimal, a str or an int (binary floating point "
                         "cannot carry a decimal exactly)");
  }
  if (PyLong_Check(v.ptr()) || PyUnicode_Check(v.ptr()) || py::isinstance(v, decimal_type()))
    return py::str(v).cast<std::string>();
  throw py::type_error(what + ": a " + std::string(Py_TYPE(v.ptr())->tp_name) +
                       " is not a number; give a Decimal, a str or an int");
}

class PyProducer {
 public:
  PyProducer(const std::string& segment, const std::string& name, std::uint64_t capacity) {
    ProducerConfig c;
    c.segment = segment;
    c.name = name;
    c.capacity = capacity;
    try {
      py::gil_scoped_release release;  // waits for the writer's socket
      p_ = Producer::open(c);
    } catch (const Error& e) {
      raise(g_error, e.what());
    }
  }

  std::uint64_t upsert(const std::string& ns, const std::string& account,
                       const std::string& instrument, const py::dict& fields, std::uint64_t seq,
                       bool replace, std::optional<double> timeout) {
    std::vector<std::string> names, texts;
    for (const auto& [k, v] : fields) {
      names.push_back(py::str(k).cast<std::string>());
      texts.push_back(value_text("field '" + names.back() + "'", v));
    }
    std::vector<std::pair<std::string_view, std::string_view>> pairs;
    for (std::size_t i = 0; i < names.size(); ++i) pairs.emplace_back(names[i], texts[i]);
    auto u = live().make_update(ns, account, instrument, pairs, seq,
                                replace ? UpdateMode::replace : UpdateMode::merge);
    if (!u) throw py::value_error(u.error());
    if (timeout) {
      PushResult r;
      {
        py::gil_scoped_release release;
        r = live().push(*u, seconds(*timeout));
      }
      return result(r);
    }
    return result(live().push(*u));
  }

  std::uint64_t fill(const std::string& ns, const std::string& account,
                     const std::string& instrument, const std::string& side, const py::handle& qty,
                     const py::handle& price, const py::handle& fee,
                     const std::optional<std::string>& trade_id) {
    Side s;
    if (side == "buy")
      s = Side::buy;
    else if (side == "sell")
      s = Side::sell;
    else
      throw py::value_error("side '" + side + "' must be 'buy' or 'sell'");
    const std::string q = value_text("qty", qty), pr = value_text("price", price),
                      fe = value_text("fee", fee);
    return result(live().fill(ns, account, instrument, s, q, pr, fe, trade_id.value_or("")));
  }

  std::uint64_t mark(const std::string& ns, const std::string& instrument, const py::handle& price,
                     const std::optional<std::string>& account) {
    return result(live().mark(ns, instrument, value_text("price", price), account.value_or("")));
  }

  std::uint64_t add(const std::string& ns, const std::string& account,
                    const std::string& instrument, const std::string& field, const py::handle& by) {
    if (!PyLong_Check(by.ptr()) || PyBool_Check(by.ptr()))
      throw py::type_error("add: 'by' must be an int");
    return result(live().add(ns, account, instrument, field, by.cast<std::int64_t>()));
  }

  std::uint64_t reset(const std::string& ns, const std::string& account,
                      const std::string& instrument, const std::string& field) {
    return result(live().reset(ns, account, instrument, field));
  }

  std::uint64_t erase(const std::string& ns, const std::string& account,
                      const std::string& instrument) {
    return result(live().erase(ns, account, instrument));
  }

  std::uint64_t invalidate(const std::optional<std::string>& account,
                           const std::optional<std::string>& ns,
                           const std::optional<std::string>& glob, bool all) {
    const int given = (account ? 1 : 0) + (glob ? 1 : 0) + (all ? 1 : 0);
    if (given > 1 || (ns && (glob || all)) || (given == 0 && !ns))
      throw py::value_error(
          "invalidate takes one of: account (with ns or not), ns, glob, all=True");
    if (account) return result(live().invalidate_account(*account, ns.value_or("")));
    if (glob) return result(live().invalidate_matching(*glob));
    if (all) return result(live().invalidate_all());
    return result(live().invalidate_namespace(*ns));
  }

  bool wait_applied(std::uint64_t seq, double timeout) {
    WaitStatus w;
    {
      py::gil_scoped_release release;
      w = live().wait_applied(seq, seconds(timeout));
    }
    return w == WaitStatus::done;
  }

  bool wait_synced(std::uint64_t seq, double timeout) {
    WaitStatus w;
    {
      py::gil_scoped_release release;
      w = live().wait_synced(seq, seconds(timeout));
    }
    if (w == WaitStatus::no_redis) raise(g_no_redis, "the writer does not mirror to Redis");
    return w == WaitStatus::done;
  }

  py::dict stats() {
    const ProducerStats s = live().stats();
    py::dict d;
    d["pushed"] = s.pushed;
    d["applied"] = s.applied;
    d["synced"] = s.synced;
    d["rejected"] = s.rejected;
    d["full"] = s.full;
    d["attached"] = s.attached;
    d["redis"] = s.redis;
    d["reconnects"] = s.reconnects;
    d["last_error"] = s.last_error;
    return d;
  }

  void close() {
    py::gil_scoped_release release;
    p_.reset();
  }

 private:
  Producer& live() {
    if (!p_) raise(g_error, "the producer is closed");
    return *p_;
  }
  std::uint64_t result(const PushResult& r) {
    switch (r.status) {
      case PushStatus::ok:
        return r.seq;
      case PushStatus::full:
        raise(g_full,
              "the producer's ring is full (the writer is behind or gone); retry, or "
              "pass timeout= to wait");
      case PushStatus::bad_input:
        throw py::value_error(p_->error());
    }
    raise(g_error, "unknown push status");
  }
  std::unique_ptr<Producer> p_;
};

}  // namespace

void add_producer(py::module_& m) {
  py::class_<PyProducer>(m, "Producer", "a ring of this process's, attached to the writer")
      .def(py::init<const std::string&, const std::string&, std::uint64_t>(), py::arg("segment"),
           py::arg("name"), py::arg("capacity") = 4096)
      .def("upsert", &PyProducer::upsert, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("fields"), py::arg("seq") = 0, py::arg("replace") = false,
           py::arg("timeout") = py::none())
      .def("fill", &PyProducer::fill, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("side"), py::arg("qty"), py::arg("price"), py::arg("fee") = "0",
           py::arg("trade_id") = py::none())
      .def("mark", &PyProducer::mark, py::arg("ns"), py::arg("instrument"), py::arg("price"),
           py::arg("account") = py::none())
      .def("add", &PyProducer::add, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("field"), py::arg("by"))
      .def("reset", &PyProducer::reset, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("field"))
      .def("erase", &PyProducer::erase, py::arg("ns"), py::arg("account"), py::arg("instrument"))
      .def("invalidate", &PyProducer::invalidate, py::arg("account") = py::none(),
           py::arg("ns") = py::none(), py::arg("glob") = py::none(), py::arg("all") = false)
      .def("wait_applied", &PyProducer::wait_applied, py::arg("seq"), py::arg("timeout"))
      .def("wait_synced", &PyProducer::wait_synced, py::arg("seq"), py::arg("timeout"))
      .def("stats", &PyProducer::stats)
      .def("close", &PyProducer::close);
}

}  // namespace poscache::python
