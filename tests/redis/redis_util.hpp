// What tests read back from Redis: one command, every position hash under a prefix, and what the
// hash of a position must be. The server itself: tests/redis_server.hpp.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "poscache/decimal.hpp"
#include "poscache/reader.hpp"
#include "poscache/redis.hpp"
#include "poscache/schema.hpp"
#include "redis_server.hpp"
#include "writer/net/redis_client.hpp"

namespace poscache::test {

// One command, its reply (throws on a lost connection).
inline detail::Reply cmd(detail::RedisClient& c, std::initializer_list<std::string> args) {
  detail::Args a;
  for (const auto& s : args) a.add(s);
  auto r = c.command(a);
  if (!r) throw std::runtime_error(r.error());
  return std::move(*r);
}

using Hash = std::map<std::string, std::string>;
using Db = std::map<std::string, Hash>;  // position key -> fields

// Every position hash under the prefix, read back with SCAN + HGETALL.
inline Db read_positions(detail::RedisClient& c, const std::string& prefix = "poscache:v1") {
  Db db;
  std::string cursor = "0";
  do {
    auto r =
        cmd(c, {"SCAN", cursor, "MATCH", prefix + ":*:{*}:*", "COUNT", "1000", "TYPE", "hash"});
    cursor.assign(r->element[0]->str, r->element[0]->len);
    for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
      const std::string key(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
      auto h = cmd(c, {"HGETALL", key});
      Hash fields;
      for (std::size_t j = 0; j + 1 < h->elements; j += 2) {
        fields[std::string(h->element[j]->str, h->element[j]->len)] =
            std::string(h->element[j + 1]->str, h->element[j + 1]->len);
      }
      db[key] = fields;
    }
  } while (cursor != "0");
  return db;
}

inline std::string key_of(const std::string& ns, std::string_view account,
                          std::string_view instrument, const std::string& prefix = "poscache:v1") {
  return prefix + ":" + ns + ":{" + std::string(account) + "}:" + std::string(instrument);
}

// What the Redis hash of a position must be: the schema's set fields as exact text, plus meta.
inline Hash expected_hash(const NamespaceSpec& spec, const Position& p) {
  Hash h;
  for (std::size_t f = 0; f < spec.fields.size(); ++f) {
    if (((p.fields_set >> f) & 1u) == 0) continue;
    const FieldSpec& fs = spec.fields[f];
    h[fs.name] = fs.type == FieldType::decimal ? format_decimal(p.values[f], fs.scale)
                 : fs.type == FieldType::text
                     ? std::string(p.text(field_slot(spec.fields, f), fs.length))
                     : std::to_string(static_cast<std::int64_t>(p.values[f]));
  }
  h["version"] = std::to_string(p.version);
  h["source_seq"] = std::to_string(p.source_seq);
  h["created_at"] = std::to_string(p.created_at_ns);
  h["updated_at"] = std::to_string(p.updated_at_ns);
  return h;
}

// The segment as Redis should hold it.
inline Db segment_as_db(const std::string& segment) {
  Reader r = Reader::open(segment);
  Db db;
  r.scan(ScanFilter{}, [&](const Position& p) {
    const NamespaceInfo& ns = r.namespace_info(p.ns);
    const NamespaceSpec spec{ns.name, ns.fields, ns.stale_after, ns.expire_after};
    db[key_of(spec.name, p.account_view(), p.instrument_view())] = expected_hash(spec, p);
  });
  return db;
}

}  // namespace poscache::test
