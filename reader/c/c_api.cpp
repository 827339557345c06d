// The C interface (include/poscache/poscache.h) over the C++ reader and producer. Every entry
// point catches what the C++ side may throw and turns it into a status plus a thread-local
// message: no exception crosses into C.
#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "poscache/decimal.hpp"
#include "poscache/error.hpp"
#include "poscache/format.hpp"
#include "reader/c/c_api_internal.hpp"

using namespace poscache;
using namespace poscache::c_api;

static_assert(POSCACHE_MAX_FIELDS == kMaxFields, "poscache.h: POSCACHE_MAX_FIELDS");
static_assert(POSCACHE_MAX_KEY == kMaxAccountLen && POSCACHE_MAX_KEY == kMaxInstrumentLen,
              "poscache.h: POSCACHE_MAX_KEY");
static_assert(static_cast<int>(Outcome::pending) == POSCACHE_OUTCOME_PENDING &&
                  static_cast<int>(Outcome::applied) == POSCACHE_OUTCOME_APPLIED &&
                  static_cast<int>(Outcome::duplicate) == POSCACHE_OUTCOME_DUPLICATE &&
                  static_cast<int>(Outcome::stale) == POSCACHE_OUTCOME_STALE &&
                  static_cast<int>(Outcome::not_found) == POSCACHE_OUTCOME_NOT_FOUND &&
                  static_cast<int>(Outcome::rejected) == POSCACHE_OUTCOME_REJECTED &&
                  static_cast<int>(Outcome::unknown) == POSCACHE_OUTCOME_UNKNOWN,
              "poscache.h: the outcomes are Producer::Outcome's numbers");
static_assert(static_cast<int>(ReadStatus::retired) == POSCACHE_RETIRED,
              "poscache.h: read statuses keep the reader's numbers");

namespace {
thread_local std::string t_error;
}  // namespace

namespace poscache::c_api {

int failed(int status, std::string why) {
  t_error = std::move(why);
  return status;
}

void to_c(const Position& p, poscache_position& out) noexcept {
  out.ns = p.ns;
  out.fields_set = p.fields_set;
  out.version = p.version;
  out.source_seq = p.source_seq;
  out.created_at_ns = p.created_at_ns;
  out.updated_at_ns = p.updated_at_ns;
  out.age_ns = p.age_ns;
  out.stale = p.stale ? 1 : 0;
  std::memcpy(out.account, p.account, p.account_len);
  out.account[p.account_len] = '\0';
  std::memcpy(out.instrument, p.instrument, p.instrument_len);
  out.instrument[p.instrument_len] = '\0';
  for (std::size_t i = 0; i < kMaxFields; ++i) {
    const auto u = static_cast<unsigned __int128>(p.values[i]);
    out.values[i].lo = static_cast<std::uint64_t>(u);
    out.values[i].hi = static_cast<std::int64_t>(static_cast<std::uint64_t>(u >> 64));
  }
}

}  // namespace poscache::c_api

namespace {

int copy_text(std::string_view text, char* buf, std::size_t len) {
  if (buf == nullptr || len == 0) return failed(POSCACHE_BAD_INPUT, "no buffer given");
  if (text.size() + 1 > len) {
    buf[0] = '\0';
    return failed(POSCACHE_SMALL_BUFFER, "the text needs " + std::to_string(text.size() + 1) +
                                             " bytes; the buffer has " + std::to_string(len));
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return POSCACHE_OK;
}

int read_status(ReadStatus s) {
  return static_cast<int>(s);
}

std::chrono::nanoseconds timeout_of(int64_t timeout_ns) {
  return std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns));
}

int push_status(const poscache_producer* p, const PushResult& r, std::uint64_t* seq) {
  switch (r.status) {
    case PushStatus::ok:
      if (seq != nullptr) *seq = r.seq;
      return POSCACHE_OK;
    case PushStatus::full:
      return failed(POSCACHE_FULL,
                    "the producer's ring stayed full for the timeout (the writer is behind, "
                    "paused or gone)");
    case PushStatus::bad_input:
      return failed(POSCACHE_BAD_INPUT, p->producer->error());
    case PushStatus::dropped:
      return failed(POSCACHE_RING_DROPPED, p->producer->error());
  }
  return failed(POSCACHE_ERROR, "unknown push status");
}

int wait_status(WaitStatus w) {
  switch (w) {
    case WaitStatus::done:
      return POSCACHE_OK;
    case WaitStatus::timeout:
      return failed(POSCACHE_TIMEOUT, "timed out");
    case WaitStatus::no_redis:
      return failed(POSCACHE_NO_REDIS, "the writer does not mirror to Redis");
    case WaitStatus::dropped:
      return failed(POSCACHE_RING_DROPPED,
                    "the writer dropped this producer's ring as damaged before the message was "
                    "applied");
  }
  return POSCACHE_ERROR;
}

}  // namespace

extern "C" {

const char* poscache_last_error(void) {
  return t_error.c_str();
}

const char* poscache_status_name(int status) {
  switch (status) {
    case POSCACHE_OK:
      return "ok";
    case POSCACHE_STALE:
      return "stale";
    case POSCACHE_NOT_FOUND:
      return "not_found";
    case POSCACHE_WRITER_BUSY:
      return "writer_busy";
    case POSCACHE_WRITER_DEAD:
      return "writer_dead";
    case POSCACHE_BAD_KEY:
      return "bad_key";
    case POSCACHE_RETIRED:
      return "retired";
    case POSCACHE_ERROR:
      return "error";
    case POSCACHE_FULL:
      return "full";
    case POSCACHE_BAD_INPUT:
      return "bad_input";
    case POSCACHE_TIMEOUT:
      return "timeout";
    case POSCACHE_NO_REDIS:
      return "no_redis";
    case POSCACHE_SMALL_BUFFER:
      return "small_buffer";
    case POSCACHE_LAPPED:
      return "lapped";
    case POSCACHE_WRITER_RESTARTED:
      return "writer_restarted";
    case POSCACHE_INVALID_POSITION:
      return "invalid_position";
    case POSCACHE_UNAVAILABLE:
      return "unavailable";
    default:
      return "unknown status";
  }
}

// ---- reader ---------------------------------------------------------------------------------

poscache_reader* poscache_reader_open(const char* segment) {
  poscache_reader* out = nullptr;
  guarded([&]() -> int {
    if (segment == nullptr) return failed(POSCACHE_BAD_INPUT, "no segment name given");
    out = new poscache_reader{Reader::open(segment)};
    return POSCACHE_OK;
  });
  return out;
}

void poscache_reader_close(poscache_reader* reader) {
  delete reader;
}

int poscache_reader_follow(poscache_reader* reader) {
  return guarded([&]() -> int {
    if (reader == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader given");
    if (reader->reader.follow() == FollowResult::unavailable)
      return failed(POSCACHE_ERROR, "the segment '" + reader->reader.segment_name() +
                                        "' is not available (no new generation yet)");
    return POSCACHE_OK;
  });
}

int poscache_namespace_id(const poscache_reader* reader, const char* ns) {
  if (reader == nullptr || ns == nullptr) return -1;
  const auto id = reader->reader.namespace_id(ns);
  return id ? static_cast<int>(*id) : -1;
}

int poscache_field_index(const poscache_reader* reader, int ns, const char* field) {
  if (reader == nullptr || field == nullptr || ns < 0 ||
      static_cast<std::size_t>(ns) >= reader->reader.namespaces().size())
    return -1;
  const auto f = reader->reader.namespaces()[static_cast<std::size_t>(ns)].field_index(field);
  return f ? static_cast<int>(*f) : -1;
}

int poscache_get(const poscache_reader* reader, const char* ns, const char* account,
                 const char* instrument, poscache_position* out) {
  if (reader == nullptr || out == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader or output");
  const int id = poscache_namespace_id(reader, ns);
  if (id < 0) return failed(POSCACHE_BAD_KEY, "no namespace '" + std::string(sv(ns)) + "'");
  return poscache_get_by_id(reader, id, account, instrument, out);
}

int poscache_get_by_id(const poscache_reader* reader, int ns, const char* account,
                       const char* instrument, poscache_position* out) {
  if (reader == nullptr || out == nullptr) return failed(POSCACHE_BAD_INPUT, "no reader or output");
  if (ns < 0 || ns > 0xFFFF) return POSCACHE_BAD_KEY;
  Position p;
  const ReadStatus s =
      reader->reader.get(static_cast<NamespaceId>(ns), sv(account), sv(instrument), p);
  if (s == ReadStatus::ok || s == ReadStatus::stale) to_c(p, *out);
  return read_status(s);
}

int poscache_get_many(const poscache_reader* reader, const poscache_key* keys, std::size_t n,
                      poscache_position* out, int* status) {
  if (reader == nullptr || (n > 0 && (keys == nullptr || out == nullptr || status == nullptr)))
    return failed(POSCACHE_BAD_INPUT, "no reader, keys, output or status");
  // In blocks of 64 through Reader::get_many, into this thread's buffer (allocated on its first
  // call, then reused: a Position array on the stack would be zeroed whole, 30 KB, on every call
  // however few the keys). A namespace id out of range is given as one no namespace has, so the
  // reader answers bad_key for it.
  constexpr std::size_t kBlock = 64;
  thread_local std::vector<Position> ps(kBlock);
  Reader::Key ks[kBlock];
  ReadStatus st[kBlock];
  for (std::size_t from = 0; from < n; from += kBlock) {
    const std::size_t m = std::min(kBlock, n - from);
    for (std::size_t i = 0; i < m; ++i) {
      const poscache_key& k = keys[from + i];
      const auto ns =
          k.ns < 0 || k.ns > 0xFFFF ? NamespaceId{0xFFFF} : static_cast<NamespaceId>(k.ns);
      ks[i] = Reader::Key{ns, sv(k.account), sv(k.instrument)};
    }
    reader->reader.get_many(std::span(ks, m), std::span(ps.data(), m), std::span(st, m));
    for (std::size_t i = 0; i < m; ++i) {
      if (st[i] == ReadStatus::ok || st[i] == ReadStatus::stale) to_c(ps[i], out[from + i]);
      status[from + i] = read_status(st[i]);
    }
  }
  return POSCACHE_OK;
}

int poscache_snapshot(const poscache_reader* reader, const char* account, poscache_position* out,
                      std::size_t cap, std::size_t* count) {
  if (reader == nullptr || count == nullptr || (out == nullptr && cap > 0))
    return failed(POSCACHE_BAD_INPUT, "no reader, output or count");
  *count = 0;
  thread_local std::vector<Position> ps;  // reused: no allocation once large enough
  const ReadStatus s = reader->reader.snapshot(sv(account), ps);
  if (s != ReadStatus::ok && s != ReadStatus::stale) return read_status(s);
  *count = ps.size();
  if (ps.size() > cap) return POSCACHE_SMALL_BUFFER;
  for (std::size_t i = 0; i < ps.size(); ++i) to_c(ps[i], out[i]);
  return read_status(s);
}

int poscache_position_field_text(const poscache_reader* reader, const poscache_position* position,
                                 const char* field, char* buf, std::size_t len) {
  if (reader == nullptr || position == nullptr || field == nullptr)
    return failed(POSCACHE_BAD_INPUT, "no reader, position or field name given");
  const auto& nss = reader->reader.namespaces();
  if (position->ns >= nss.size())
    return failed(POSCACHE_BAD_INPUT, "the position's namespace id is not in this segment");
  const NamespaceInfo& info = nss[position->ns];
  const auto f = info.field_index(field);
  if (!f) {
    return failed(POSCACHE_BAD_INPUT,
                  "namespace '" + info.name + "' has no field '" + std::string(field) + "'");
  }
  if (((position->fields_set >> *f) & 1u) == 0) {
    if (buf != nullptr && len > 0) buf[0] = '\0';
    return POSCACHE_NOT_FOUND;
  }
  const FieldSpec& spec = info.fields[*f];
  if (spec.type == FieldType::text) {  // its bytes from its first slot, up to the first NUL
    static_assert(sizeof(poscache_int128) == sizeof(int128));
    return copy_text(text_in_slots(position->values, field_slot(info.fields, *f), spec.length), buf,
                     len);
  }
  const poscache_int128 v = position->values[*f];
  const auto mantissa = static_cast<int128>(
      (static_cast<unsigned __int128>(static_cast<std::uint64_t>(v.hi)) << 64) | v.lo);
  // As format_field: an int64 or timestamp field is a decimal of scale 0.
  char text[48];
  const std::size_t n =
      format_decimal(mantissa, spec.type == FieldType::decimal ? spec.scale : 0, text);
  return copy_text(std::string_view(text, n), buf, len);
}

uint64_t poscache_change_sequence(const poscache_reader* reader) {
  return reader == nullptr ? 0 : reader->reader.change_sequence();
}

int poscache_wait_for_change(const poscache_reader* reader, uint64_t seen, int64_t timeout_ns) {
  if (reader == nullptr) return 0;
  return reader->reader.wait_for_change(seen,
                                        std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns)))
             ? 1
             : 0;
}

// ---- the change ring ------------------------------------------------------------------------

static_assert(POSCACHE_CHANGE_INSERTED == static_cast<int>(ChangeKind::inserted) &&
              POSCACHE_CHANGE_INVALIDATED_ALL == static_cast<int>(ChangeKind::invalidated_all) &&
              POSCACHE_MAX_PATTERN == kMaxPatternLen);

const char* poscache_change_kind_name(int kind) {
  if (kind < POSCACHE_CHANGE_INSERTED || kind > POSCACHE_CHANGE_INVALIDATED_ALL)
    return "unknown kind";
  return to_string(static_cast<ChangeKind>(kind)).data();  // static strings: NUL-terminated
}

uint64_t poscache_change_position(const poscache_reader* reader) {
  return reader == nullptr ? 0 : reader->reader.change_position();
}

int poscache_changes(const poscache_reader* reader, uint64_t from, poscache_change* out,
                     std::size_t cap, std::size_t* count, uint64_t* next) {
  if (reader == nullptr || count == nullptr || next == nullptr || (out == nullptr && cap > 0))
    return failed(POSCACHE_BAD_INPUT, "no reader, output, count or next");
  *count = 0;
  thread_local std::vector<Change> cs;  // reused: no allocation once large enough
  const ChangesResult res = reader->reader.changes(from, cs, cap);
  for (const Change& c : cs) {
    poscache_change& o = out[(*count)++];
    o.position = c.position;
    o.kind = static_cast<int>(c.kind);
    o.ns = c.ns == kAnyNamespace ? -1 : c.ns;
    o.version = c.version;
    o.at_ns = c.at_ns;
    std::memcpy(o.account, c.account, c.account_len);
    o.account[c.account_len] = '\0';
    std::memcpy(o.instrument, c.instrument, c.instrument_len);
    o.instrument[c.instrument_len] = '\0';
    std::memcpy(o.pattern, c.pattern, c.pattern_len);
    o.pattern[c.pattern_len] = '\0';
  }
  *next = res.next;
  switch (res.status) {
    case ChangeStatus::ok:
      return POSCACHE_OK;
    case ChangeStatus::lapped:
      return POSCACHE_LAPPED;
    case ChangeStatus::writer_restarted:
      return POSCACHE_WRITER_RESTARTED;
    case ChangeStatus::invalid_position:
      return POSCACHE_INVALID_POSITION;
    case ChangeStatus::unavailable:
      return POSCACHE_UNAVAILABLE;
    case ChangeStatus::retired:
      return POSCACHE_RETIRED;
  }
  return failed(POSCACHE_ERROR, "unknown change status");
}

int poscache_wait_for_changes(const poscache_reader* reader, uint64_t from, int64_t timeout_ns) {
  if (reader == nullptr) return 0;
  return reader->reader.wait_for_changes(from,
                                         std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns)))
             ? 1
             : 0;
}

// ---- producer -------------------------------------------------------------------------------

poscache_producer* poscache_producer_open(const char* segment, const char* name) {
  poscache_producer* out = nullptr;
  guarded([&]() -> int {
    if (segment == nullptr || name == nullptr)
      return failed(POSCACHE_BAD_INPUT, "a producer needs a segment and a name");
    ProducerConfig c;
    c.segment = segment;
    c.name = name;
    out = new poscache_producer{Producer::open(c)};
    return POSCACHE_OK;
  });
  return out;
}

void poscache_producer_close(poscache_producer* producer) {
  delete producer;
}

#define POSCACHE_PRODUCER_OR_FAIL(p) \
  if ((p) == nullptr || !(p)->producer) return failed(POSCACHE_BAD_INPUT, "no producer given");

int poscache_upsert(poscache_producer* producer, const char* ns, const char* account,
                    const char* instrument, const char* const* field_names,
                    const char* const* field_values, size_t nfields, uint64_t source_seq, int mode,
                    int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    if (nfields > kMaxFields) {
      return failed(POSCACHE_BAD_INPUT,
                    std::to_string(nfields) + " fields; at most " + std::to_string(kMaxFields));
    }
    if (nfields > 0 && (field_names == nullptr || field_values == nullptr))
      return failed(POSCACHE_BAD_INPUT, "field names or values missing");
    if (mode != POSCACHE_MERGE && mode != POSCACHE_REPLACE)
      return failed(POSCACHE_BAD_INPUT,
                    "mode " + std::to_string(mode) + " is not merge or replace");
    std::pair<std::string_view, std::string_view> fields[kMaxFields];
    for (std::size_t i = 0; i < nfields; ++i) {
      if (field_names[i] == nullptr || field_values[i] == nullptr)
        return failed(POSCACHE_BAD_INPUT, "field " + std::to_string(i) + " has no name or value");
      fields[i] = {field_names[i], field_values[i]};
    }
    auto u = producer->producer->make_update(
        sv(ns), sv(account), sv(instrument), std::span(fields, nfields), source_seq,
        mode == POSCACHE_REPLACE ? UpdateMode::replace : UpdateMode::merge);
    if (!u) return failed(POSCACHE_BAD_INPUT, u.error());
    return push_status(producer, producer->producer->push(*u, timeout_of(timeout_ns)), seq);
  });
}

int poscache_fill(poscache_producer* producer, const char* ns, const char* account,
                  const char* instrument, int side, const char* qty, const char* price,
                  const char* fee, const char* trade_id, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    if (side != POSCACHE_BUY && side != POSCACHE_SELL)
      return failed(POSCACHE_BAD_INPUT, "side " + std::to_string(side) + " is not buy or sell");
    return push_status(
        producer,
        producer->producer->fill(sv(ns), sv(account), sv(instrument),
                                 side == POSCACHE_BUY ? Side::buy : Side::sell, sv(qty), sv(price),
                                 fee == nullptr ? std::string_view("0") : sv(fee), sv(trade_id),
                                 timeout_of(timeout_ns)),
        seq);
  });
}

int poscache_mark(poscache_producer* producer, const char* ns, const char* instrument,
                  const char* price, const char* account, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(producer,
                       producer->producer->mark(sv(ns), sv(instrument), sv(price), sv(account),
                                                timeout_of(timeout_ns)),
                       seq);
  });
}

int poscache_add(poscache_producer* producer, const char* ns, const char* account,
                 const char* instrument, const char* field, int64_t by, int64_t timeout_ns,
                 uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(producer,
                       producer->producer->add(sv(ns), sv(account), sv(instrument), sv(field), by,
                                               timeout_of(timeout_ns)),
                       seq);
  });
}

int poscache_reset(poscache_producer* producer, const char* ns, const char* account,
                   const char* instrument, const char* field, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(producer,
                       producer->producer->reset(sv(ns), sv(account), sv(instrument), sv(field),
                                                 timeout_of(timeout_ns)),
                       seq);
  });
}

int poscache_erase(poscache_producer* producer, const char* ns, const char* account,
                   const char* instrument, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(
        producer,
        producer->producer->erase(sv(ns), sv(account), sv(instrument), timeout_of(timeout_ns)),
        seq);
  });
}

int poscache_invalidate_account(poscache_producer* producer, const char* account, const char* ns,
                                int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(
        producer,
        producer->producer->invalidate_account(sv(account), sv(ns), timeout_of(timeout_ns)), seq);
  });
}

int poscache_invalidate_namespace(poscache_producer* producer, const char* ns, int64_t timeout_ns,
                                  uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(
        producer, producer->producer->invalidate_namespace(sv(ns), timeout_of(timeout_ns)), seq);
  });
}

int poscache_invalidate_matching(poscache_producer* producer, const char* glob, int64_t timeout_ns,
                                 uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(
        producer, producer->producer->invalidate_matching(sv(glob), timeout_of(timeout_ns)), seq);
  });
}

int poscache_invalidate_all(poscache_producer* producer, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(producer, producer->producer->invalidate_all(timeout_of(timeout_ns)), seq);
  });
}

int poscache_batch_begin(poscache_producer* producer) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    if (producer->producer->in_batch())
      return failed(POSCACHE_BAD_INPUT, "a batch is open already (poscache_batch_end or _abort)");
    producer->producer->begin_batch();
    return POSCACHE_OK;
  });
}

int poscache_batch_end(poscache_producer* producer, int64_t timeout_ns, uint64_t* seq) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return push_status(producer, producer->producer->end_batch(timeout_of(timeout_ns)), seq);
  });
}

void poscache_batch_abort(poscache_producer* producer) {
  if (producer != nullptr && producer->producer) producer->producer->abort_batch();
}

int poscache_outcome(const poscache_producer* producer, uint64_t seq, char* why, size_t len) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    std::string reason;
    const Outcome o = producer->producer->outcome(seq, &reason);
    if (why != nullptr && len > 0) {
      const std::size_t n = std::min(reason.size(), len - 1);
      std::memcpy(why, reason.data(), n);
      why[n] = '\0';
    }
    return static_cast<int>(o);
  });
}

int poscache_wait_applied(const poscache_producer* producer, uint64_t seq, int64_t timeout_ns) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return wait_status(producer->producer->wait_applied(
        seq, std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns))));
  });
}

int poscache_wait_synced(const poscache_producer* producer, uint64_t seq, int64_t timeout_ns) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded([&]() -> int {
    return wait_status(producer->producer->wait_synced(
        seq, std::chrono::nanoseconds(std::max<int64_t>(0, timeout_ns))));
  });
}

int poscache_producer_last_refusal(const poscache_producer* producer, char* buf, size_t len) {
  POSCACHE_PRODUCER_OR_FAIL(producer)
  return guarded(
      [&]() -> int { return copy_text(producer->producer->stats().last_error, buf, len); });
}

}  // extern "C"
