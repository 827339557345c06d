#include "writer/redis/redis_format.hpp"

#include <charconv>
#include <cstring>

#include "poscache/decimal.hpp"
#include "shm/clock.hpp"
#include "shm/slot_codec.hpp"
#include "shm/values/quote.hpp"

namespace poscache::detail {

using shm::SlotPayload;

std::string RedisFormat::position_key(std::string_view ns, std::string_view account,
                                      std::string_view instrument) const {
  std::string k;
  k.reserve(prefix_.size() + ns.size() + account.size() + instrument.size() + 6);
  k.append(prefix_).append(":").append(ns).append(":{").append(account).append("}:").append(
      instrument);
  return k;
}

std::string RedisFormat::account_key(std::string_view account) const {
  std::string k;
  k.reserve(prefix_.size() + account.size() + 12);
  k.append(prefix_).append(":@account:{").append(account).append("}");
  return k;
}

std::string RedisFormat::member(std::string_view ns, std::string_view instrument) {
  std::string m(ns);
  m.append(":").append(instrument);
  return m;
}

std::string RedisFormat::scan_pattern(std::optional<std::uint16_t> ns) const {
  // The prefix has no glob characters (validate(RedisConfig)); namespaces never do.
  if (ns) return prefix_ + ":" + ns_.at(*ns).name + ":{*}:*";
  return prefix_ + ":*:{*}:*";
}

std::optional<ParsedKey> RedisFormat::parse_key(std::string_view key) const {
  if (key.size() <= prefix_.size() + 1 || key.substr(0, prefix_.size()) != prefix_ ||
      key[prefix_.size()] != ':') {
    return std::nullopt;
  }
  std::string_view rest = key.substr(prefix_.size() + 1);
  const std::size_t c1 = rest.find(":{");
  if (c1 == std::string_view::npos || c1 == 0) return std::nullopt;
  const std::size_t c2 = rest.find("}:", c1 + 2);
  if (c2 == std::string_view::npos || c2 == c1 + 2 || c2 + 2 >= rest.size()) return std::nullopt;
  ParsedKey k{std::string(rest.substr(0, c1)), std::string(rest.substr(c1 + 2, c2 - c1 - 2)),
              std::string(rest.substr(c2 + 2))};
  if (k.ns.front() == '@') return std::nullopt;
  if (!validate_namespace_name(k.ns) || !validate_account(k.account) ||
      !validate_instrument(k.instrument)) {
    return std::nullopt;
  }
  return k;
}

std::optional<std::uint16_t> RedisFormat::namespace_id(std::string_view ns) const {
  for (std::size_t i = 0; i < ns_.size(); ++i) {
    if (ns_[i].name == ns) return static_cast<std::uint16_t>(i);
  }
  return std::nullopt;
}

void RedisFormat::add_upsert(const SlotPayload& p, Args& keys, Args& argv) const {
  const NamespaceSpec& spec = ns_[p.ns];
  const std::string_view account(p.account, p.account_len);
  const std::string_view instrument(p.instrument, p.instrument_len);
  keys.add_concat({prefix_, ":", spec.name, ":{", account, "}:", instrument});
  keys.add_concat({prefix_, ":@account:{", account, "}"});
  argv.add(p.version);
  argv.add_concat({spec.name, ":", instrument});
  if (spec.expire_after.count() > 0) {
    const std::int64_t expire_ns = p.updated_at_ns + spec.expire_after.count();
    argv.add_int(std::max<std::int64_t>(1, expire_ns / 1'000'000));
  } else {
    argv.add("0");
  }
  const auto nfields = static_cast<std::uint32_t>(spec.fields.size());
  std::uint32_t unset = 0;
  for (std::uint32_t f = 0; f < nfields; ++f) unset += ((p.fields_set >> f) & 1u) == 0;
  argv.add(static_cast<std::uint64_t>(unset));
  argv.add(static_cast<std::uint64_t>(nfields - unset + 4));  // field/value pairs, meta included
  add_unset_names(p, argv);
  add_field_values(p, argv);
}

void RedisFormat::add_unset_names(const SlotPayload& p, Args& out) const {
  const NamespaceSpec& spec = ns_[p.ns];
  for (std::uint32_t f = 0; f < spec.fields.size(); ++f) {
    if (((p.fields_set >> f) & 1u) == 0) out.add(spec.fields[f].name);
  }
}

void RedisFormat::add_field_values(const SlotPayload& p, Args& out) const {
  const NamespaceSpec& spec = ns_[p.ns];
  char buf[48];
  for (std::uint32_t f = 0; f < spec.fields.size(); ++f) {
    if (((p.fields_set >> f) & 1u) == 0) continue;
    const FieldSpec& fs = spec.fields[f];
    out.add(fs.name);
    if (fs.type == FieldType::text) {  // the text itself, as Redis stores any string
      out.add(shm::payload_text(p, field_slot(spec.fields, f), fs.length));
      continue;
    }
    const int128 v = shm::field_value(p, f);
    if (fs.type == FieldType::decimal) {
      out.add(std::string_view(buf, format_decimal(v, fs.scale, buf)));
    } else {
      out.add_int(static_cast<std::int64_t>(v));
    }
  }
  out.add("version").add(p.version);
  out.add("source_seq").add(p.source_seq);
  out.add("created_at").add_int(p.created_at_ns);
  out.add("updated_at").add_int(p.updated_at_ns);
}

std::size_t RedisFormat::add_plain_upsert(const SlotPayload& p, unsigned flags,
                                          const std::string& set_sha, Commands& out) const {
  const NamespaceSpec& spec = ns_[p.ns];
  const std::string_view account(p.account, p.account_len);
  const std::string_view instrument(p.instrument, p.instrument_len);
  const std::size_t before = out.size();
  const auto nfields = static_cast<std::uint32_t>(spec.fields.size());
  const std::uint32_t all = nfields >= 32 ? ~0u : (1u << nfields) - 1u;
  if ((flags & kDropUnset) != 0 && (p.fields_set & all) != all) {
    add_unset_names(
        p, out.cmd("HDEL").add_concat({prefix_, ":", spec.name, ":{", account, "}:", instrument}));
  }
  add_field_values(
      p, out.cmd("HSET").add_concat({prefix_, ":", spec.name, ":{", account, "}:", instrument}));
  if (spec.expire_after.count() > 0) {
    const std::int64_t expire_ms =
        std::max<std::int64_t>(1, (p.updated_at_ns + spec.expire_after.count()) / 1'000'000);
    out.cmd("PEXPIREAT")
        .add_concat({prefix_, ":", spec.name, ":{", account, "}:", instrument})
        .add_int(expire_ms);
    // The set's own expiry follows its members: a script (README "The Redis format").
    out.cmd("EVALSHA")
        .add(set_sha)
        .add("1")
        .add_concat({prefix_, ":@account:{", account, "}"})
        .add_concat({spec.name, ":", instrument})
        .add_int(expire_ms);
  } else if ((flags & kAddMember) != 0) {
    out.cmd("ZADD")
        .add_concat({prefix_, ":@account:{", account, "}"})
        .add("inf")
        .add_concat({spec.name, ":", instrument});
    // A set that also holds expiring members has an expiry; this member lives until removed.
    if (any_expiring_) out.cmd("PERSIST").add_concat({prefix_, ":@account:{", account, "}"});
  }
  return out.size() - before;
}

std::size_t RedisFormat::add_plain_delete(std::string_view ns, std::string_view account,
                                          std::string_view instrument, Commands& out) const {
  out.cmd("UNLINK").add_concat({prefix_, ":", ns, ":{", account, "}:", instrument});
  out.cmd("ZREM")
      .add_concat({prefix_, ":@account:{", account, "}"})
      .add_concat({ns, ":", instrument});
  return 2;
}

// XADD {prefix}:@changes MINID ~ <now - retention> * kind: the value of `kind` comes next.
void RedisFormat::add_xadd_head(Args& out) const {
  out.add("XADD")
      .add_concat({prefix_, ":@changes"})
      .add("MINID")
      .add("~")
      .add_int(std::max<std::int64_t>(0, shm::realtime_ns() / 1'000'000 - retention_ms_))
      .add("*")
      .add("kind");
}

void RedisFormat::begin_changes(Args& entry) const {
  entry.clear();
  if (retention_ms_ <= 0) return;
  add_xadd_head(entry);
  entry.add("changes");
}

void RedisFormat::add_change(Args& entry, bool upsert, std::string_view ns,
                             std::string_view account, std::string_view instrument,
                             std::uint64_t version) const {
  if (retention_ms_ <= 0) return;
  char text[24];
  text[0] = upsert ? '+' : '-';
  const auto end = std::to_chars(text + 1, text + sizeof text, version).ptr;
  entry.add_concat({ns, ":", account, ":", instrument})
      .add(std::string_view(text, static_cast<std::size_t>(end - text)));
}

std::size_t RedisFormat::finish_changes(const Args& entry, Commands& out) const {
  if (entry.size() <= 8) return 0;  // XADD key MINID ~ id * kind changes: no change added
  out.add(entry);
  return 1;
}

std::size_t RedisFormat::add_pattern_change(std::string_view scope, std::string_view ns,
                                            std::string_view pattern, std::uint64_t version,
                                            Commands& out) const {
  if (retention_ms_ <= 0) return 0;
  Args a;  // (a removal by pattern is rare: its own buffer)
  add_xadd_head(a);
  a.add("pattern")
      .add("scope")
      .add(scope)
      .add("ns")
      .add(ns)
      .add("pattern")
      .add(pattern)
      .add("version")
      .add(version);
  out.add(a);
  return 1;
}

void UpsertCall::add(const RedisFormat& fmt, const SlotPayload& p) {
  fmt.add_upsert(p, keys_, argv_);
  ++n_;
}

Expected<bool> UpsertCall::append_to(RedisClient& client, const std::string& sha) {
  head_.clear();
  head_.add("EVALSHA").add(sha).add(static_cast<std::uint64_t>(keys_.size()));
  return client.append({&head_, &keys_, &argv_});
}

void RedisFormat::delete_args(const std::string& sha, std::string_view ns, std::string_view account,
                              std::string_view instrument, std::uint64_t version, Args& out) const {
  out.clear();
  out.add("EVALSHA").add(sha).add("2");
  out.add(position_key(ns, account, instrument)).add(account_key(account));
  out.add(version).add(member(ns, instrument));
}

void RedisFormat::schema_args(Args& out) const {
  out.clear();
  out.add("HSET").add(schema_key());
  for (const NamespaceSpec& n : ns_) {
    std::string j = "{\"fields\":[";
    for (std::size_t f = 0; f < n.fields.size(); ++f) {
      if (f != 0) j += ",";
      const FieldSpec& fs = n.fields[f];
      j += "{\"name\":\"" + fs.name + "\",\"type\":\"" + std::string(to_string(fs.type)) +
           (fs.type == FieldType::text ? "\",\"length\":" + std::to_string(fs.length)
                                       : "\",\"scale\":" + std::to_string(fs.scale)) +
           "}";
    }
    j += "],\"stale_after_ms\":" + std::to_string(n.stale_after.count() / 1'000'000) +
         ",\"expire_after_ms\":" + std::to_string(n.expire_after.count() / 1'000'000) + "}";
    out.add(n.name).add(j);
  }
}

namespace {
Expected<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) {
    return fail(detail::quoted(text) + " is not an unsigned 64-bit integer");
  }
  return v;
}
}  // namespace

Expected<SlotPayload> RedisFormat::decode(const ParsedKey& key, std::uint16_t ns,
                                          const redisReply* r) const {
  const std::string where = position_key(key.ns, key.account, key.instrument) + ": ";
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
    return fail(where + "expected a hash, found " + reply_text(r));
  }
  const NamespaceSpec& spec = ns_[ns];
  SlotPayload p{};
  p.ns = ns;
  p.account_len = static_cast<std::uint8_t>(key.account.size());
  p.instrument_len = static_cast<std::uint8_t>(key.instrument.size());
  std::memcpy(p.account, key.account.data(), key.account.size());
  std::memcpy(p.instrument, key.instrument.data(), key.instrument.size());
  bool have_version = false, have_updated = false, have_created = false;
  for (std::size_t i = 0; i < r->elements; i += 2) {
    const redisReply* f = r->element[i];
    const redisReply* v = r->element[i + 1];
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
      return fail(where + "a field is not a string");
    const std::string_view name(f->str, f->len), text(v->str, v->len);
    if (name == "version") {
      auto x = parse_u64(text);
      if (!x) return fail(where + "version: " + x.error());
      p.version = *x;
      have_version = true;
    } else if (name == "source_seq") {
      auto x = parse_u64(text);
      if (!x) return fail(where + "source_seq: " + x.error());
      p.source_seq = *x;
    } else if (name == "created_at" || name == "updated_at") {
      auto x = parse_int64(text);
      if (!x) return fail(where + std::string(name) + ": " + x.error());
      (name == "created_at" ? p.created_at_ns : p.updated_at_ns) = *x;
      (name == "created_at" ? have_created : have_updated) = true;
    } else {
      std::size_t fi = spec.fields.size();
      for (std::size_t j = 0; j < spec.fields.size(); ++j) {
        if (spec.fields[j].name == name) fi = j;
      }
      if (fi == spec.fields.size()) {
        return fail(where + "field '" + std::string(name) +
                    "' is not in the schema of namespace '" + spec.name + "'");
      }
      const FieldSpec& fs = spec.fields[fi];
      if (fs.type == FieldType::text) {
        if (auto ok = validate_text(fs, text); !ok) return fail(where + ok.error());
        shm::set_payload_text(p, field_slot(spec.fields, fi), fs.length, text);
        p.fields_set |= 1u << fi;
        continue;
      }
      int128 value = 0;
      if (fs.type == FieldType::decimal) {
        auto x = parse_decimal(text, fs.scale);
        if (!x) return fail(where + "field '" + fs.name + "': " + x.error());
        value = *x;
      } else {
        auto x = parse_int64(text);
        if (!x) return fail(where + "field '" + fs.name + "': " + x.error());
        value = *x;
      }
      shm::set_field_value(p, fi, value);
      p.fields_set |= 1u << fi;
    }
  }
  if (!have_version || !have_updated || !have_created) {
    return fail(where + "missing " +
                std::string(!have_version   ? "version"
                            : !have_updated ? "updated_at"
                                            : "created_at"));
  }
  if (p.version == 0) return fail(where + "version 0 is not a version");
  return p;
}

}  // namespace poscache::detail
