// poscache.Producer: a ring of this process's attached to the writer, with the ingest command
// set. Values are Decimal, str or int, crossing as their exact text; a float is refused.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>

#include "poscache/producer.hpp"
#include "reader/python/binding_common.hpp"

namespace poscache::python {

namespace {

// A value for a field: Decimal, str or int as text; a float (or a bool) is refused. A Decimal
// may be in any form Python gives it (1E-7, 1.0E+3, a value just read, .normalize()): it
// crosses as its plain digits, trailing fractional zeros dropped, so that every finite Decimal
// exact at the field's scale is taken, and one that is not is refused by the parser naming the
// field and the scale. NaN and infinities are refused here.
std::string value_text(const std::string& what, const py::handle& v) {
  if (PyBool_Check(v.ptr()))
    throw py::type_error(what + ": a bool is not a number; give a Decimal, a str or an int");
  if (PyFloat_Check(v.ptr())) {
    throw py::type_error(what + ": " + py::str(v).cast<std::string>() +
                         " is a float; give a Decimal, a str or an int (binary floating point "
                         "cannot carry a decimal exactly)");
  }
  if (PyLong_Check(v.ptr()) || PyUnicode_Check(v.ptr())) return py::str(v).cast<std::string>();
  if (py::isinstance(v, decimal_type())) {
    if (!v.attr("is_finite")().cast<bool>())
      throw py::value_error(what + ": Decimal('" + py::str(v).cast<std::string>() +
                            "') is not a finite number");
    std::string text = py::str(py::module_::import("builtins").attr("format")(v, "f"));
    if (const auto dot = text.find('.'); dot != std::string::npos) {
      const auto last = text.find_last_not_of('0');
      text.erase(last == dot ? dot : last + 1);
    }
    return text;
  }
  throw py::type_error(what + ": a " + std::string(Py_TYPE(v.ptr())->tp_name) +
                       " is not a number; give a Decimal, a str or an int");
}

// A push's timeout: None or 0 answers Full at once; otherwise it waits that many seconds for
// room while the ring is full.
Producer::Timeout timeout_of(const std::optional<double>& timeout) {
  if (!timeout) return Producer::Timeout::zero();
  if (!(*timeout >= 0)) throw py::value_error("timeout must be a number of seconds >= 0");
  return std::chrono::duration_cast<Producer::Timeout>(seconds(*timeout));
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
    return push([&](Producer::Timeout t) { return live().push(*u, t); }, timeout);
  }

  std::uint64_t fill(const std::string& ns, const std::string& account,
                     const std::string& instrument, const std::string& side, const py::handle& qty,
                     const py::handle& price, const py::handle& fee,
                     const std::optional<std::string>& trade_id,
                     const std::optional<double>& timeout) {
    Side s;
    if (side == "buy")
      s = Side::buy;
    else if (side == "sell")
      s = Side::sell;
    else
      throw py::value_error("side '" + side + "' must be 'buy' or 'sell'");
    const std::string q = value_text("qty", qty), pr = value_text("price", price),
                      fe = value_text("fee", fee);
    if (trade_id && (trade_id->empty() || trade_id->size() > 64))
      throw py::value_error("fill: trade_id must have 1 to 64 characters; found " +
                            std::to_string(trade_id->size()) + " (None: no de-duplication)");
    const std::string id = trade_id.value_or("");
    return push(
        [&](Producer::Timeout t) {
          return live().fill(ns, account, instrument, s, q, pr, fe, id, t);
        },
        timeout);
  }

  std::uint64_t mark(const std::string& ns, const std::string& instrument, const py::handle& price,
                     const std::optional<std::string>& account,
                     const std::optional<double>& timeout) {
    const std::string text = value_text("price", price), acc = account.value_or("");
    return push([&](Producer::Timeout t) { return live().mark(ns, instrument, text, acc, t); },
                timeout);
  }

  std::uint64_t add(const std::string& ns, const std::string& account,
                    const std::string& instrument, const std::string& field, const py::handle& by,
                    const std::optional<double>& timeout) {
    if (!PyLong_Check(by.ptr()) || PyBool_Check(by.ptr()))
      throw py::type_error("add: 'by' must be an int");
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(by.ptr(), &overflow);
    if (overflow != 0)
      throw py::value_error("add: 'by' = " + py::str(by).cast<std::string>() +
                            " is outside int64 (-9223372036854775808 to 9223372036854775807)");
    if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
    return push(
        [&](Producer::Timeout t) {
          return live().add(ns, account, instrument, field, static_cast<std::int64_t>(n), t);
        },
        timeout);
  }

  std::uint64_t reset(const std::string& ns, const std::string& account,
                      const std::string& instrument, const std::string& field,
                      const std::optional<double>& timeout) {
    return push(
        [&](Producer::Timeout t) { return live().reset(ns, account, instrument, field, t); },
        timeout);
  }

  std::uint64_t erase(const std::string& ns, const std::string& account,
                      const std::string& instrument, const std::optional<double>& timeout) {
    return push([&](Producer::Timeout t) { return live().erase(ns, account, instrument, t); },
                timeout);
  }

  std::uint64_t invalidate(const std::optional<std::string>& account,
                           const std::optional<std::string>& ns,
                           const std::optional<std::string>& glob, bool all,
                           const std::optional<double>& timeout) {
    const int given = (account ? 1 : 0) + (glob ? 1 : 0) + (all ? 1 : 0);
    if (given > 1 || (ns && (glob || all)) || (given == 0 && !ns))
      throw py::value_error(
          "invalidate takes one of: account (with ns or not), ns, glob, all=True");
    return push(
        [&](Producer::Timeout t) {
          if (account) return live().invalidate_account(*account, ns.value_or(""), t);
          if (glob) return live().invalidate_matching(*glob, t);
          if (all) return live().invalidate_all(t);
          return live().invalidate_namespace(*ns, t);
        },
        timeout);
  }

  bool wait_applied(std::uint64_t seq, double timeout) {
    WaitStatus w;
    {
      py::gil_scoped_release release;
      w = live().wait_applied(seq, seconds(timeout));
    }
    if (w == WaitStatus::dropped) raise(g_error, dropped_text());
    return w == WaitStatus::done;
  }

  // A batch: a list of commands as dicts ({"op": "fill", "ns": ..., ...}, the other keys the
  // arguments of the method of that name), applied all or nothing. Returns the batch's
  // sequence: outcome(seq) is the batch's, outcome(seq + 1 + i) command i's.
  std::uint64_t batch(py::handle self, const py::sequence& commands,
                      const std::optional<double>& timeout) {
    static const char* const kOps[] = {"upsert", "fill", "mark", "add", "reset", "erase"};
    Producer& p = live();
    p.begin_batch();
    try {
      std::size_t i = 0;
      for (const py::handle c : commands) {
        if (!py::isinstance<py::dict>(c)) {
          throw py::type_error("batch: command " + std::to_string(i) + " is a " +
                               std::string(Py_TYPE(c.ptr())->tp_name) +
                               "; give a dict with an \"op\"");
        }
        py::dict args = py::reinterpret_borrow<py::dict>(c).attr("copy")();
        if (!args.contains("op"))
          throw py::value_error("batch: command " + std::to_string(i) + " has no \"op\"");
        const std::string op = py::str(args["op"]);
        PyDict_DelItemString(args.ptr(), "op");
        if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps))
          throw py::value_error("batch: command " + std::to_string(i) + ": op '" + op +
                                "' cannot be part of a batch (upsert, fill, mark, add, reset, "
                                "erase)");
        try {
          self.attr(op.c_str())(**args);
        } catch (py::error_already_set& e) {
          e.restore();
          PyObject *type, *value, *tb;
          PyErr_Fetch(&type, &value, &tb);
          PyErr_NormalizeException(&type, &value, &tb);
          std::string detail = py::str(value).cast<std::string>();
          if (detail.find("incompatible function arguments") != std::string::npos) {
            // pybind11's text lists the overload and the call; say it in the batch's terms.
            const auto sig = detail.find("(self: poscache.Producer, ");
            detail = "its members do not match " + op + "()'s arguments" +
                     (sig != std::string::npos
                          ? " (" + detail.substr(sig + 26, detail.find(')', sig) - sig - 26) + ")"
                          : std::string());
          }
          const std::string msg =
              "batch: command " + std::to_string(i) + " (" + op + "): " + detail;
          Py_XDECREF(tb);
          Py_XDECREF(value);
          PyErr_SetString(type, msg.c_str());
          Py_XDECREF(type);
          throw py::error_already_set();
        }
        ++i;
      }
    } catch (...) {
      p.abort_batch();
      throw;
    }
    return push([&](Producer::Timeout t) { return live().end_batch(t); }, timeout);
  }

  // What the writer did with message `seq`: 'applied', 'duplicate', 'stale', 'not_found',
  // 'rejected' (refusal(seq) says why), 'pending' or 'unknown'.
  std::string outcome(std::uint64_t seq) { return std::string(to_string(live().outcome(seq))); }
  std::optional<std::string> refusal(std::uint64_t seq) {
    std::string why;
    if (live().outcome(seq, &why) != Outcome::rejected) return std::nullopt;
    return why;
  }

  bool wait_synced(std::uint64_t seq, double timeout) {
    WaitStatus w;
    {
      py::gil_scoped_release release;
      w = live().wait_synced(seq, seconds(timeout));
    }
    if (w == WaitStatus::dropped) raise(g_error, dropped_text());
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
    d["dropped"] = s.dropped;
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
  std::string dropped_text() {
    const std::string why = live().stats().last_error;
    return why.empty() ? "the writer dropped this producer's ring as damaged" : why;
  }
  // One push, the GIL released while it may wait for room.
  template <class F>
  std::uint64_t push(F&& f, const std::optional<double>& timeout) {
    const Producer::Timeout t = timeout_of(timeout);
    PushResult r;
    if (t == Producer::Timeout::zero()) {
      r = f(t);
    } else {
      live();  // raises (with the GIL held) if closed
      py::gil_scoped_release release;
      r = f(t);
    }
    return result(r, timeout.has_value() && t != Producer::Timeout::zero());
  }
  std::uint64_t result(const PushResult& r, bool waited) {
    switch (r.status) {
      case PushStatus::ok:
        return r.seq;
      case PushStatus::full:
        raise(g_full, waited ? "the producer's ring stayed full for the whole timeout (the "
                               "writer is behind, stopped or gone)"
                             : "the producer's ring is full (the writer is behind or gone); "
                               "retry, or pass timeout= to wait");
      case PushStatus::bad_input:
        throw py::value_error(p_->error());
      case PushStatus::dropped:
        raise(g_error, p_->error());
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
           py::arg("trade_id") = py::none(), py::arg("timeout") = py::none())
      .def("mark", &PyProducer::mark, py::arg("ns"), py::arg("instrument"), py::arg("price"),
           py::arg("account") = py::none(), py::arg("timeout") = py::none())
      .def("add", &PyProducer::add, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("field"), py::arg("by"), py::arg("timeout") = py::none())
      .def("reset", &PyProducer::reset, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("field"), py::arg("timeout") = py::none())
      .def("erase", &PyProducer::erase, py::arg("ns"), py::arg("account"), py::arg("instrument"),
           py::arg("timeout") = py::none())
      .def("invalidate", &PyProducer::invalidate, py::arg("account") = py::none(),
           py::arg("ns") = py::none(), py::arg("glob") = py::none(), py::arg("all") = false,
           py::arg("timeout") = py::none())
      .def("wait_applied", &PyProducer::wait_applied, py::arg("seq"), py::arg("timeout"))
      .def(
          "batch",
          [](py::object self, const py::sequence& commands, const std::optional<double>& timeout) {
            return self.cast<PyProducer&>().batch(self, commands, timeout);
          },
          py::arg("commands"), py::arg("timeout") = py::none())
      .def("outcome", &PyProducer::outcome, py::arg("seq"))
      .def("refusal", &PyProducer::refusal, py::arg("seq"))
      .def("wait_synced", &PyProducer::wait_synced, py::arg("seq"), py::arg("timeout"))
      .def("stats", &PyProducer::stats)
      .def("close", &PyProducer::close);
}

}  // namespace poscache::python
