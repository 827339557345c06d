#include "poscache/producer.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "reader/producer/producer_impl.hpp"
#include "reader/producer/ring_attach.hpp"
#include "shm/cpu_relax.hpp"
#include "shm/hash.hpp"
#include "shm/ring.hpp"
#include "shm/seqlock.hpp"

namespace poscache {

using detail::connect_and_attach;
using detail::futex_wait;
using shm::RingHeader;
using shm::RingKind;
using shm::RingMessage;

namespace {
std::string errno_text() {
  return std::strerror(errno);
}
}  // namespace

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Producer::~Producer() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->watcher.joinable()) impl_->watcher.join();
  if (impl_->sock >= 0) ::close(impl_->sock);  // the writer drains what is left, then releases
  if (impl_->h != nullptr) ::munmap(impl_->h, impl_->bytes);
  if (impl_->ring_fd >= 0) ::close(impl_->ring_fd);
}

std::unique_ptr<Producer> Producer::open(const ProducerConfig& config) {
  const std::string& n = config.name;
  if (n.empty() || n.size() > 31 ||
      n.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos)
    throw Error("producer name '" + n + "' must be 1 to 31 of [A-Za-z0-9._-]");
  if (config.capacity < 2 || config.capacity > (1u << 20) ||
      (config.capacity & (config.capacity - 1)) != 0)
    throw Error("producer ring capacity " + std::to_string(config.capacity) +
                " must be a power of two from 2 to 1048576");
  auto impl = std::make_unique<Impl>(Reader::open(config.segment));
  Impl& p = *impl;
  p.cfg = config;
  p.socket_path = config.socket.empty() ? "/dev/shm/" + config.segment + ".sock" : config.socket;
  p.bytes = shm::ring_bytes(config.capacity);
  p.ring_fd = ::memfd_create(("poscache-ring:" + n).c_str(), MFD_CLOEXEC);
  if (p.ring_fd < 0) throw Error("memfd_create for the producer ring: " + errno_text());
  if (::ftruncate(p.ring_fd, static_cast<off_t>(p.bytes)) != 0)
    throw Error("cannot size the producer ring to " + std::to_string(p.bytes) +
                " bytes: " + errno_text());
  void* m = ::mmap(nullptr, p.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, p.ring_fd, 0);
  if (m == MAP_FAILED) throw Error("cannot map the producer ring: " + errno_text());
  p.h = static_cast<RingHeader*>(m);
  p.msgs = shm::ring_messages(p.h);
  p.outcomes = shm::ring_outcomes(p.h, config.capacity);
  p.mask = config.capacity - 1;
  RingHeader& h = *p.h;  // zero-filled by ftruncate
  h.version = shm::kRingVersion;
  h.message_size = sizeof(RingMessage);
  h.capacity = config.capacity;
  h.producer_pid = ::getpid();
  std::memcpy(h.name, n.data(), n.size());
  shm::store_release(&h.magic, shm::kRingMagic);
  // The first attach is synchronous: open() fails if no writer takes the ring.
  std::string why;
  const auto deadline = std::chrono::steady_clock::now() + config.connect_timeout;
  for (;;) {
    p.sock = connect_and_attach(p.socket_path, p.ring_fd, n, why);
    if (p.sock >= 0 || std::chrono::steady_clock::now() >= deadline) break;
    if (why.find("refused the ring") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (p.sock < 0) throw Error("producer '" + n + "': " + why);
  p.watcher = std::thread([&p] { p.watch(); });
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

// ---- building ---------------------------------------------------------------------------------
Expected<NamespaceId> Producer::namespace_id(std::string_view ns) const {
  auto id = impl_->reader.namespace_id(ns);
  if (!id) return fail("unknown namespace '" + std::string(ns) + "'");
  return *id;
}

Expected<Update> Producer::make_update(
    std::string_view ns, std::string_view account, std::string_view instrument,
    std::span<const std::pair<std::string_view, std::string_view>> fields, std::uint64_t source_seq,
    UpdateMode mode) const {
  auto id = namespace_id(ns);
  if (!id) return fail(id.error());
  if (auto ok = validate_account(account); !ok) return fail(ok.error());
  if (auto ok = validate_instrument(instrument); !ok) return fail(ok.error());
  if (fields.empty()) return fail("an update needs at least one field");
  const NamespaceInfo& info = impl_->reader.namespace_info(*id);
  Update u;
  u.ns = *id;
  u.mode = mode;
  u.source_seq = source_seq;
  u.account_len = static_cast<std::uint8_t>(account.size());
  u.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(u.account, account.data(), account.size());
  std::memcpy(u.instrument, instrument.data(), instrument.size());
  for (const auto& [name, text] : fields) {
    const auto f = info.field_index(name);
    if (!f) return fail("namespace '" + info.name + "' has no field '" + std::string(name) + "'");
    if ((u.fields_mask >> *f) & 1u) return fail("field '" + std::string(name) + "' given twice");
    const FieldSpec& fs = info.fields[*f];
    if (fs.type == FieldType::text) {
      if (auto ok = validate_text(fs, text); !ok) return fail(ok.error());
      put_text(u.values, field_slot(info.fields, *f), fs.length, text);
    } else if (fs.type == FieldType::decimal) {
      auto v = parse_decimal(text, fs.scale);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      u.values[*f] = *v;
    } else {
      auto v = parse_int64(text);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      u.values[*f] = *v;
    }
    u.fields_mask |= 1u << *f;
  }
  return u;
}

// ---- pushing ----------------------------------------------------------------------------------
namespace {
void put_key(RingMessage& m, NamespaceId ns, std::string_view account,
             std::string_view instrument) {
  m.ns = ns;
  m.account_len = static_cast<std::uint8_t>(account.size());
  m.instrument_len = static_cast<std::uint8_t>(instrument.size());
  // (an empty part, as a mark of every account has, may have a null data())
  if (!account.empty()) std::memcpy(m.account, account.data(), account.size());
  if (!instrument.empty()) std::memcpy(m.instrument, instrument.data(), instrument.size());
}
void put_value(RingMessage& m, std::size_t i, int128 v) {
  const auto u = static_cast<unsigned __int128>(v);
  m.values[2 * i] = static_cast<std::uint64_t>(u);
  m.values[2 * i + 1] = static_cast<std::uint64_t>(u >> 64);
}
}  // namespace

// Every push's answer passes here: a drop says why; inside a batch, the first refusal is kept
// for end_batch (which then sends nothing).
PushResult Producer::finish(PushResult r) {
  Impl& p = *impl_;
  if (r.status == PushStatus::dropped) {
    error_ = p.ring_error();
    if (error_.empty()) error_ = "the writer dropped this producer's ring as damaged";
  }
  if (p.batching) {
    if (r.status == PushStatus::bad_input && !p.batch_refusal.empty()) {
      error_ = std::move(p.batch_refusal);
      p.batch_refusal.clear();
    }
    if (r.status != PushStatus::ok && p.batch_error.empty())
      p.batch_error = "command " + std::to_string(p.batch_calls) + ": " + error_;
    ++p.batch_calls;
  }
  return r;
}

void Producer::begin_batch() {
  Impl& p = *impl_;
  if (p.batching) throw Error("begin_batch: a batch is open already (end_batch or abort_batch)");
  p.batching = true;
  p.staged.clear();
  p.batch_calls = 0;
  p.batch_error.clear();
}

bool Producer::in_batch() const noexcept {
  return impl_->batching;
}

void Producer::abort_batch() noexcept {
  impl_->batching = false;
  impl_->staged.clear();
}

PushResult Producer::end_batch(Timeout timeout) {
  Impl& p = *impl_;
  if (!p.batching) {
    error_ = "end_batch: no batch is open (begin_batch first)";
    return {PushStatus::bad_input, 0};
  }
  p.batching = false;
  const std::vector<RingMessage> staged = std::move(p.staged);
  p.staged.clear();
  if (!p.batch_error.empty()) {
    error_ = "batch: " + p.batch_error + "; nothing of the batch was sent";
    return {PushStatus::bad_input, 0};
  }
  if (staged.empty()) {
    error_ = "batch: no commands; a batch has 1 to " + std::to_string(kMaxBatchCommands);
    return {PushStatus::bad_input, 0};
  }
  if (staged.size() + 1 > p.mask + 1) {
    error_ = "batch: " + std::to_string(staged.size()) + " commands need a ring of at least " +
             std::to_string(staged.size() + 1) + " messages; this producer's holds " +
             std::to_string(p.mask + 1);
    return {PushStatus::bad_input, 0};
  }
  return finish(p.publish_batch(staged, timeout));
}

PushResult Producer::push(const Update& u, Timeout timeout) {
  // The producer's side of the input rules (the writer proves the hash and re-checks the rest).
  const auto& r = impl_->reader;
  const char* bad = nullptr;
  if (u.ns >= r.namespaces().size()) {
    bad = "namespace id beyond the segment's";
  } else if (u.account_len == 0 || u.account_len > kMaxAccountLen ||
             !valid_account(u.account_view())) {
    bad = "account is not a valid key part";
  } else if (u.instrument_len == 0 || u.instrument_len > kMaxInstrumentLen ||
             !valid_instrument(u.instrument_view())) {
    bad = "instrument is not a valid key part";
  } else if (u.fields_mask == 0) {
    bad = "no field given";
  } else {
    const NamespaceInfo& info = r.namespace_info(u.ns);
    if (info.fields.size() < 32 && (u.fields_mask >> info.fields.size()) != 0) {
      bad = "a field beyond the namespace's schema";
    } else {
      for (std::size_t f = 0; f < info.fields.size() && bad == nullptr; ++f) {
        if (((u.fields_mask >> f) & 1u) == 0) continue;
        if (info.fields[f].type == FieldType::text) {
          const std::size_t len = info.fields[f].length;
          if (!valid_text(text_in(u.values, field_slot(info.fields, f), len), len))
            bad = "a text field that is not UTF-8 of at most its length";
          continue;
        }
        const int128 v = u.values[f];
        if (info.fields[f].type != FieldType::decimal ? (v > INT64_MAX || v < INT64_MIN)
                                                      : (v >= kDecimalLimit || v <= -kDecimalLimit))
          bad = "a value beyond its field's range";
      }
    }
  }
  if (bad != nullptr) {
    error_ = std::string("upsert: ") + bad;
    return finish({PushStatus::bad_input, 0});
  }
  const std::uint64_t hash = shm::key_hash(u.ns, u.account_view(), u.instrument_view());
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::upsert);
        m.mode = u.mode == UpdateMode::replace ? 1 : 0;
        put_key(m, u.ns, u.account_view(), u.instrument_view());
        m.fields_mask = u.fields_mask;
        m.key_hash = hash;
        m.source_seq = u.source_seq;
        // Every value slot (a text field spans several; unused slots are zero).
        for (std::size_t slot = 0; slot < kMaxFields; ++slot) put_value(m, slot, u.values[slot]);
      },
      timeout));
}

namespace {
// A key of a command (not an upsert), checked as the writer would.
std::string key_problem(std::string_view account, std::string_view instrument,
                        bool account_optional) {
  if (!(account_optional && account.empty()))
    if (auto ok = validate_account(account); !ok) return ok.error();
  if (auto ok = validate_instrument(instrument); !ok) return ok.error();
  return {};
}
}  // namespace

PushResult Producer::fill(std::string_view ns, std::string_view account,
                          std::string_view instrument, Side side, std::string_view qty,
                          std::string_view price, std::string_view fee, std::string_view trade_id,
                          Timeout timeout) {
  auto id = namespace_id(ns);
  std::string why = id ? key_problem(account, instrument, false) : id.error();
  const NamespaceInfo* info = id ? &impl_->reader.namespace_info(*id) : nullptr;
  auto scale_of = [&](const char* field) -> int {
    const auto f = info->field_index(field);
    return f && info->fields[*f].type == FieldType::decimal ? info->fields[*f].scale : -1;
  };
  int128 q = 0, p = 0, f = 0;
  if (why.empty()) {
    const int qs = scale_of("qty"), ps = scale_of("avg_price"), fs = scale_of("fees");
    if (qs < 0 || ps < 0 || fs < 0) {
      why = "namespace '" + info->name +
            "' lacks the trading fields fill needs (qty, avg_price, "
            "cost_basis, realized_pnl, fees)";
    } else if (auto v = parse_decimal(qty, static_cast<unsigned>(qs)); !v) {
      why = "qty: " + v.error();
    } else if (auto w = parse_decimal(price, static_cast<unsigned>(ps)); !w) {
      why = "price: " + w.error();
    } else if (auto x = parse_decimal(fee, static_cast<unsigned>(fs)); !x) {
      why = "fee: " + x.error();
    } else if (*v <= 0) {
      why = "qty must be greater than 0 (the side says buy or sell)";
    } else if (*w < 0) {
      why = "price must not be negative";
    } else if (trade_id.size() > 64) {
      why = "trade id longer than 64 characters";
    } else {
      q = *v, p = *w, f = *x;
    }
  }
  if (!why.empty()) {
    error_ = "fill: " + why;
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::fill);
        m.mode = side == Side::buy ? 0 : 1;
        put_key(m, *id, account, instrument);
        put_value(m, 0, q);
        put_value(m, 1, p);
        put_value(m, 2, f);
        m.text_len = static_cast<std::uint8_t>(trade_id.size());
        if (!trade_id.empty()) std::memcpy(m.text, trade_id.data(), trade_id.size());
      },
      timeout));
}

PushResult Producer::mark(std::string_view ns, std::string_view instrument, std::string_view price,
                          std::string_view account, Timeout timeout) {
  auto id = namespace_id(ns);
  std::string why = id ? key_problem(account, instrument, true) : id.error();
  int128 p = 0;
  if (why.empty()) {
    const NamespaceInfo& info = impl_->reader.namespace_info(*id);
    const auto f = info.field_index("mark_price");
    if (!f || info.fields[*f].type != FieldType::decimal) {
      why = "namespace '" + info.name + "' has no decimal field 'mark_price'";
    } else if (auto v = parse_decimal(price, info.fields[*f].scale); !v) {
      why = "price: " + v.error();
    } else if (*v < 0) {
      why = "price must not be negative";
    } else {
      p = *v;
    }
  }
  if (!why.empty()) {
    error_ = "mark: " + why;
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::mark);
        put_key(m, *id, account, instrument);
        put_value(m, 0, p);
      },
      timeout));
}

namespace {
struct AddArgs {
  bool reset;
  std::int64_t by;
};
}  // namespace

static PushResult push_add(Producer::Impl& impl, std::string& error, std::string_view ns,
                           std::string_view account, std::string_view instrument,
                           std::string_view field, AddArgs a, Producer::Timeout timeout) {
  auto id = impl.reader.namespace_id(ns);
  std::string why =
      id ? key_problem(account, instrument, false) : "unknown namespace '" + std::string(ns) + "'";
  std::size_t f = 0;
  if (why.empty()) {
    const NamespaceInfo& info = impl.reader.namespace_info(*id);
    const auto fi = info.field_index(field);
    if (!fi) {
      why = "namespace '" + info.name + "' has no field '" + std::string(field) + "'";
    } else if (info.fields[*fi].type != FieldType::int64) {
      // The writer's words (writer/ingest/executor.cpp), so both paths say the same.
      why = "field '" + std::string(field) + "' of namespace '" + info.name + "' is a " +
            std::string(to_string(info.fields[*fi].type)) + "; add works on int64 fields";
    } else {
      f = *fi;
    }
  }
  if (!why.empty()) {
    error = "add: " + why;
    return {PushStatus::bad_input, 0};
  }
  return impl.publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::add);
        m.mode = a.reset ? 1 : 0;
        m.field = static_cast<std::uint8_t>(f);
        put_key(m, *id, account, instrument);
        put_value(m, 0, a.by);
      },
      timeout);
}

PushResult Producer::add(std::string_view ns, std::string_view account, std::string_view instrument,
                         std::string_view field, std::int64_t by, Timeout timeout) {
  return finish(push_add(*impl_, error_, ns, account, instrument, field, {false, by}, timeout));
}
PushResult Producer::reset(std::string_view ns, std::string_view account,
                           std::string_view instrument, std::string_view field, Timeout timeout) {
  return finish(push_add(*impl_, error_, ns, account, instrument, field, {true, 0}, timeout));
}

PushResult Producer::erase(std::string_view ns, std::string_view account,
                           std::string_view instrument, Timeout timeout) {
  auto id = namespace_id(ns);
  std::string why = id ? key_problem(account, instrument, false) : id.error();
  if (!why.empty()) {
    error_ = "erase: " + why;
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::erase);
        put_key(m, *id, account, instrument);
      },
      timeout));
}

PushResult Producer::invalidate_account(std::string_view account, std::string_view ns,
                                        Timeout timeout) {
  std::string why;
  NamespaceId nid = 0;
  if (auto ok = validate_account(account); !ok) why = ok.error();
  if (why.empty() && !ns.empty()) {
    auto id = namespace_id(ns);
    if (!id)
      why = id.error();
    else
      nid = *id;
  }
  if (!why.empty()) {
    error_ = "invalidate: " + why;
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::invalidate_account);
        m.ns = nid;
        m.field = ns.empty() ? 0 : 1;
        m.account_len = static_cast<std::uint8_t>(account.size());
        std::memcpy(m.account, account.data(), account.size());
      },
      timeout));
}

PushResult Producer::invalidate_namespace(std::string_view ns, Timeout timeout) {
  auto id = namespace_id(ns);
  if (!id) {
    error_ = "invalidate: " + id.error();
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::invalidate_namespace);
        m.ns = *id;
      },
      timeout));
}

PushResult Producer::invalidate_matching(std::string_view glob, Timeout timeout) {
  if (glob.empty() || glob.size() > shm::kRingTextLen) {
    error_ = "invalidate: a glob over a ring has 1 to " + std::to_string(shm::kRingTextLen) +
             " characters; this one has " + std::to_string(glob.size()) +
             " (longer ones: the socket)";
    return finish({PushStatus::bad_input, 0});
  }
  return finish(impl_->publish(
      [&](RingMessage& m) {
        m.kind = static_cast<std::uint8_t>(RingKind::invalidate_glob);
        m.text_len = static_cast<std::uint8_t>(glob.size());
        std::memcpy(m.text, glob.data(), glob.size());
      },
      timeout));
}

PushResult Producer::invalidate_all(Timeout timeout) {
  return finish(impl_->publish(
      [](RingMessage& m) { m.kind = static_cast<std::uint8_t>(RingKind::invalidate_all); },
      timeout));
}

}  // namespace poscache
