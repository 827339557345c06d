#include "writer/daemon/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <tuple>

#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include "shm/values/duration.hpp"
#include "shm/values/quote.hpp"
#include "writer/http/server.hpp"

namespace poscache::daemon {

Expected<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  return detail::parse_duration(text);
}

namespace {

[[noreturn]] void bad(const std::string& origin, const toml::node& node, const std::string& msg) {
  const auto& src = node.source();
  throw Error(origin + ":" + std::to_string(src.begin.line) + ":" +
              std::to_string(src.begin.column) + ": " + msg);
}

void only_keys(const std::string& origin, const toml::table& t, std::string_view where,
               std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : t) {
    bool ok = false;
    for (auto a : allowed) ok = ok || k.str() == a;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      bad(origin, v,
          "unknown key '" + std::string(k.str()) + "' in " + std::string(where) +
              " (known: " + list + ")");
    }
  }
}

std::int64_t integer(const std::string& origin, const toml::node& n, std::string_view key,
                     std::int64_t min, std::int64_t max) {
  const auto v = n.value<std::int64_t>();
  if (!v || *v < min || *v > max) {
    std::string found;  // the value as the file has it
    if (v)
      found = std::to_string(*v);
    else if (const auto str = n.value<std::string>())
      found = detail::quoted(*str);
    else if (const auto f = n.value<double>())
      found = std::to_string(*f);
    bad(origin, n,
        detail::quoted(key) + " must be an integer from " + std::to_string(min) + " to " +
            std::to_string(max) + (found.empty() ? std::string() : ", not " + found));
  }
  return *v;
}

bool boolean(const std::string& origin, const toml::node& n, std::string_view key) {
  const std::optional<bool> v = n.value_exact<bool>();
  if (!v) bad(origin, n, "'" + std::string(key) + "' must be true or false");
  return *v;
}

std::string text(const std::string& origin, const toml::node& n, std::string_view key) {
  const auto v = n.value<std::string>();
  if (!v) bad(origin, n, "'" + std::string(key) + "' must be a string");
  return *v;
}

std::chrono::nanoseconds duration(const std::string& origin, const toml::node& n,
                                  std::string_view key) {
  if (const auto i = n.value<std::int64_t>(); i && *i == 0) return std::chrono::nanoseconds{0};
  if (n.is_number())
    bad(origin, n,
        "'" + std::string(key) + "' must be a duration string with a unit, such as \"5ms\" or " +
            "\"2s\" (a bare number has none)");
  const auto d = parse_duration(text(origin, n, key));
  if (!d) bad(origin, n, "'" + std::string(key) + "': " + d.error());
  return *d;
}

// "stale", "miss", "both", "none" into the policy; false if it is none of them.
bool set_refresh_on(std::string_view on, refresh::RefreshPolicy& p) {
  if (on != "stale" && on != "miss" && on != "both" && on != "none") return false;
  p.on_stale = on == "stale" || on == "both";
  p.on_miss = on == "miss" || on == "both";
  return true;
}

// A [[namespace]]'s refresh keys; nullopt if it has none.
std::optional<refresh::RefreshPolicy> refresh_from(const std::string& origin, const toml::table& t,
                                                   const std::string& ns) {
  refresh::RefreshPolicy p;
  bool any = false;
  if (const toml::node* n = t.get("refresh")) {
    if (!set_refresh_on(text(origin, *n, "refresh"), p))
      bad(origin, *n, "namespace '" + ns + "': refresh must be stale, miss, both or none");
    any = true;
  }
  if (const toml::node* n = t.get("refresh_timeout")) {
    p.timeout = duration(origin, *n, "refresh_timeout");
    if (p.timeout.count() <= 0) bad(origin, *n, "'refresh_timeout' must be more than 0");
    any = true;
  }
  if (const toml::node* n = t.get("refresh_retries")) {
    p.retries = static_cast<std::uint32_t>(integer(origin, *n, "refresh_retries", 0, 100));
    any = true;
  }
  if (const toml::node* n = t.get("refresh_max_in_flight")) {
    p.max_in_flight =
        static_cast<std::uint32_t>(integer(origin, *n, "refresh_max_in_flight", 1, 1'000'000));
    any = true;
  }
  if (const toml::node* n = t.get("negative_ttl")) {
    p.negative_ttl = duration(origin, *n, "negative_ttl");
    any = true;
  }
  if (const toml::node* n = t.get("rebuild_on_empty")) {
    p.rebuild_on_empty = boolean(origin, *n, "rebuild_on_empty");
    any = true;
  }
  if (const toml::node* n = t.get("refresh_ahead")) {
    const auto f = n->value<double>();
    if (!f || *f < 0 || *f >= 1)
      bad(origin, *n,
          "'refresh_ahead' must be a fraction of stale_after from 0 to below 1 "
          "(0.8: a read in the last fifth of stale_after refreshes)");
    p.ahead = *f;
    any = true;
  }
  if (!any) return std::nullopt;
  return p;
}

mode_t parse_mode(const std::string& s, const std::string& where) {
  char* end = nullptr;
  const unsigned long v = std::strtoul(s.c_str(), &end, 8);
  if (s.empty() || *end != '\0' || v > 0777)
    throw Error(where + ": mode '" + s + "' must be octal permission bits such as 0640");
  return static_cast<mode_t>(v);
}

NamespaceSpec namespace_from(const std::string& origin, const toml::table& t) {
  only_keys(origin, t, "[[namespace]]",
            {"name", "preset", "fields", "stale_after", "expire_after", "sync", "refresh",
             "refresh_timeout", "refresh_retries", "refresh_max_in_flight", "refresh_ahead",
             "negative_ttl", "rebuild_on_empty"});
  const toml::node* name = t.get("name");
  if (name == nullptr) bad(origin, t, "[[namespace]] needs a 'name'");
  NamespaceSpec spec;
  const std::string n = text(origin, *name, "name");
  if (const toml::node* p = t.get("preset")) {
    if (t.get("fields") != nullptr)
      bad(origin, *p, "namespace '" + n + "': give either 'preset' or 'fields', not both");
    auto ps = preset(text(origin, *p, "preset"), n);
    if (!ps) bad(origin, *p, ps.error());
    spec = *ps;
  } else if (const toml::array* fields = t.get_as<toml::array>("fields")) {
    spec.name = n;
    for (const auto& f : *fields) {
      const toml::table* ft = f.as_table();
      if (ft == nullptr)
        bad(origin, f, "namespace '" + n + "': each field is a table {name, type, scale}");
      only_keys(origin, *ft, "a field", {"name", "type", "scale", "length"});
      FieldSpec fs;
      if (ft->get("name") == nullptr || ft->get("type") == nullptr)
        bad(origin, f, "namespace '" + n + "': a field needs 'name' and 'type'");
      fs.name = text(origin, *ft->get("name"), "name");
      const std::string type = text(origin, *ft->get("type"), "type");
      if (type == "decimal")
        fs.type = FieldType::decimal;
      else if (type == "int64")
        fs.type = FieldType::int64;
      else if (type == "timestamp")
        fs.type = FieldType::timestamp;
      else if (type == "text")
        fs.type = FieldType::text;
      else
        bad(origin, *ft->get("type"),
            "field '" + fs.name + "': type '" + type +
                "' is not decimal, int64, timestamp or text");
      if (const toml::node* sc = ft->get("scale"))
        fs.scale = static_cast<std::uint8_t>(integer(origin, *sc, "scale", 0, kMaxScale));
      if (const toml::node* len = ft->get("length"))
        fs.length = static_cast<std::uint8_t>(
            integer(origin, *len, "length", 1, static_cast<long long>(kMaxTextLen)));
      else if (fs.type == FieldType::text)
        bad(origin, f,
            "text field '" + fs.name + "' needs a 'length' (1 to " + std::to_string(kMaxTextLen) +
                " bytes)");
      spec.fields.push_back(fs);
    }
  } else {
    bad(origin, t, "namespace '" + n + "' needs a 'preset' (trading, lending, quote) or 'fields'");
  }
  if (const toml::node* s = t.get("stale_after"))
    spec.stale_after = duration(origin, *s, "stale_after");
  if (const toml::node* e = t.get("expire_after"))
    spec.expire_after = duration(origin, *e, "expire_after");
  if (auto ok = validate(spec); !ok) bad(origin, t, ok.error());
  return spec;
}

// [segment]
void segment_from(const std::string& origin, const toml::table& seg, DaemonConfig& c) {
  only_keys(
      origin, seg, "[segment]",
      {"name", "capacity", "mode", "heartbeat_interval", "recreate", "huge_pages", "change_ring"});
  if (auto* n = seg.get("name")) c.writer.segment = text(origin, *n, "name");
  if (auto* n = seg.get("capacity"))
    c.writer.capacity = static_cast<std::uint64_t>(integer(origin, *n, "capacity", 1, 1ll << 31));
  if (auto* n = seg.get("mode")) c.writer.mode = parse_mode(text(origin, *n, "mode"), origin);
  if (auto* n = seg.get("heartbeat_interval"))
    c.writer.heartbeat_interval = duration(origin, *n, "heartbeat_interval");
  if (auto* n = seg.get("recreate"))
    c.writer.recreate_on_mismatch = boolean(origin, *n, "recreate");
  if (auto* n = seg.get("huge_pages")) c.writer.huge_pages = boolean(origin, *n, "huge_pages");
  if (auto* n = seg.get("change_ring")) c.writer.change_ring = boolean(origin, *n, "change_ring");
}

// [[namespace]]: they replace the defaults, their sync and refresh settings too.
void namespaces_from(const std::string& origin, const toml::array& nss, DaemonConfig& c) {
  c.writer.namespaces.clear();
  c.unsynced_namespaces.clear();
  c.refresh.clear();
  std::set<std::string> seen;
  for (const auto& n : nss) {
    const toml::table* t = n.as_table();
    if (t == nullptr) bad(origin, n, "[[namespace]] entries are tables");
    NamespaceSpec spec = namespace_from(origin, *t);
    if (!seen.insert(spec.name).second)
      bad(origin, n, "namespace '" + spec.name + "' is declared twice");
    if (auto p = refresh_from(origin, *t, spec.name)) {
      if (p->ahead > 0 && spec.stale_after.count() == 0)
        bad(origin, n, "namespace '" + spec.name + "': refresh_ahead needs a stale_after");
      c.refresh[spec.name] = *p;
    }
    if (const toml::node* sy = t->get("sync")) {
      const std::string v = text(origin, *sy, "sync");
      if (v == "none")
        c.unsynced_namespaces.push_back(spec.name);
      else if (v != "redis")
        bad(origin, *sy, "namespace '" + spec.name + "': sync '" + v + "' is not redis or none");
    }
    c.writer.namespaces.push_back(std::move(spec));
  }
}

// [generator]
void generator_from(const std::string& origin, const toml::table& g, DaemonConfig& c) {
  only_keys(origin, g, "[generator]", {"enabled", "rate", "accounts", "instruments", "seed"});
  if (auto* n = g.get("enabled")) c.generator.enabled = boolean(origin, *n, "enabled");
  if (auto* n = g.get("rate"))
    c.generator.rate = static_cast<double>(integer(origin, *n, "rate", 1, 100'000'000));
  if (auto* n = g.get("accounts"))
    c.generator.accounts =
        static_cast<std::uint32_t>(integer(origin, *n, "accounts", 1, 100'000'000));
  if (auto* n = g.get("instruments"))
    c.generator.instruments =
        static_cast<std::uint32_t>(integer(origin, *n, "instruments", 1, 100'000));
  if (auto* n = g.get("seed"))
    c.generator.seed = static_cast<std::uint64_t>(integer(origin, *n, "seed", 0, INT64_MAX));
}

// [ingest]: the socket, the rings and the Redis streams consumed.
void ingest_from(const std::string& origin, const toml::table& in, DaemonConfig& c) {
  only_keys(origin, in, "[ingest]",
            {"socket", "rings", "busy_poll", "socket_path", "socket_mode", "socket_group",
             "trade_window", "streams", "stream_group", "stream_consumer", "stream_start",
             "stream_batch", "stream_rejected_maxlen"});
  if (auto* n = in.get("busy_poll")) c.ingest.busy_poll = boolean(origin, *n, "busy_poll");
  if (auto* n = in.get("socket")) c.ingest.socket = boolean(origin, *n, "socket");
  if (auto* n = in.get("rings")) c.ingest.rings = boolean(origin, *n, "rings");
  if (auto* n = in.get("socket_path"))
    c.ingest.socket_config.path = text(origin, *n, "socket_path");
  if (auto* n = in.get("socket_mode"))
    c.ingest.socket_config.mode = parse_mode(text(origin, *n, "socket_mode"), origin);
  if (auto* n = in.get("socket_group"))
    c.ingest.socket_config.group = text(origin, *n, "socket_group");
  if (auto* n = in.get("trade_window"))
    c.ingest.trade_window =
        static_cast<std::uint64_t>(integer(origin, *n, "trade_window", 1024, 1ll << 28));
  ingest::StreamConfig& sc = c.ingest.stream;
  if (auto* n = in.get("streams")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) bad(origin, *n, "'streams' must be an array of stream names");
    sc.streams.clear();
    for (const auto& s : *list) sc.streams.push_back(text(origin, s, "streams"));
  }
  if (auto* n = in.get("stream_group")) sc.group = text(origin, *n, "stream_group");
  if (auto* n = in.get("stream_consumer")) sc.consumer = text(origin, *n, "stream_consumer");
  if (auto* n = in.get("stream_start")) sc.start = text(origin, *n, "stream_start");
  if (auto* n = in.get("stream_batch"))
    sc.batch = static_cast<std::size_t>(
        integer(origin, *n, "stream_batch", 1, ingest::StreamSource::kMaxInFlight));
  if (auto* n = in.get("stream_rejected_maxlen"))
    sc.rejected_maxlen =
        static_cast<std::size_t>(integer(origin, *n, "stream_rejected_maxlen", 1, INT64_MAX));
  if (auto ok = ingest::validate(sc); !ok) bad(origin, in, ok.error());
}

// [redis]: the mirror; enabled = false turns it off whatever else the table says.
void redis_from(const std::string& origin, const toml::table& r, DaemonConfig& c) {
  only_keys(origin, r, "[redis]",
            {"enabled",
             "host",
             "port",
             "unix_socket",
             "db",
             "username",
             "password",
             "connect_timeout",
             "command_timeout",
             "prefix",
             "flush_interval",
             "batch_size",
             "warm_start",
             "close_timeout",
             "guard",
             "lease_ttl",
             "host_name",
             "positions_per_call",
             "refill_rate",
             "change_stream_retention"});
  RedisConfig& rc = c.writer.redis ? *c.writer.redis : c.writer.redis.emplace();
  auto ms = [&](const toml::node& n, std::string_view key) {
    const std::chrono::nanoseconds d = duration(origin, n, key);
    if (d.count() % 1'000'000 != 0)  // the Redis settings count whole milliseconds
      bad(origin, n, "'" + std::string(key) + "' must be a whole number of milliseconds");
    return std::chrono::duration_cast<std::chrono::milliseconds>(d);
  };
  if (auto* n = r.get("host")) rc.host = text(origin, *n, "host");
  if (auto* n = r.get("port")) rc.port = static_cast<int>(integer(origin, *n, "port", 1, 65535));
  if (auto* n = r.get("unix_socket")) rc.unix_socket = text(origin, *n, "unix_socket");
  if (auto* n = r.get("db")) rc.db = static_cast<int>(integer(origin, *n, "db", 0, 1 << 20));
  if (auto* n = r.get("username")) rc.username = text(origin, *n, "username");
  if (auto* n = r.get("password")) rc.password = text(origin, *n, "password");
  if (auto* n = r.get("connect_timeout")) rc.connect_timeout = ms(*n, "connect_timeout");
  if (auto* n = r.get("command_timeout")) rc.command_timeout = ms(*n, "command_timeout");
  if (auto* n = r.get("prefix")) rc.prefix = text(origin, *n, "prefix");
  if (auto* n = r.get("flush_interval")) rc.flush_interval = ms(*n, "flush_interval");
  if (auto* n = r.get("batch_size"))
    rc.batch_size = static_cast<std::size_t>(integer(origin, *n, "batch_size", 1, 100'000));
  if (auto* n = r.get("warm_start")) rc.warm_start = boolean(origin, *n, "warm_start");
  if (auto* n = r.get("close_timeout")) rc.close_timeout = ms(*n, "close_timeout");
  if (auto* n = r.get("guard")) {
    const std::string g = text(origin, *n, "guard");
    if (g == "fence")
      rc.guard = RedisGuard::fence;
    else if (g == "scripts")
      rc.guard = RedisGuard::scripts;
    else
      bad(origin, *n, "guard '" + g + "' is not fence or scripts");
  }
  if (auto* n = r.get("lease_ttl")) rc.lease_ttl = ms(*n, "lease_ttl");
  if (auto* n = r.get("host_name")) rc.host_name = text(origin, *n, "host_name");
  if (auto* n = r.get("refill_rate"))
    rc.refill_rate = static_cast<std::size_t>(integer(origin, *n, "refill_rate", 1000, 10'000'000));
  if (auto* n = r.get("change_stream_retention"))
    rc.change_stream_retention = ms(*n, "change_stream_retention");
  if (auto* n = r.get("positions_per_call"))
    rc.positions_per_call =
        static_cast<std::size_t>(integer(origin, *n, "positions_per_call", 1, 1000));
  if (auto* n = r.get("enabled"); n != nullptr && !boolean(origin, *n, "enabled"))
    c.writer.redis.reset();
  if (c.writer.redis) {
    if (auto ok = validate(*c.writer.redis); !ok) bad(origin, r, ok.error());
  }
}

// [http]
void http_from(const std::string& origin, const toml::table& h, DaemonConfig& c) {
  only_keys(origin, h, "[http]",
            {"listen", "admin_token_file", "max_sync_lag", "threads", "request_timeout",
             "max_connections", "max_connections_per_peer", "admin_max_failures",
             "admin_failure_window"});
  if (auto* n = h.get("listen")) {
    auto addr = http::parse_listen(text(origin, *n, "listen"));
    if (!addr) bad(origin, *n, addr.error());
    c.http.listen = *addr;
  }
  if (auto* n = h.get("admin_token_file"))
    c.http.admin_token_file = text(origin, *n, "admin_token_file");
  if (auto* n = h.get("max_sync_lag")) c.http.max_sync_lag = duration(origin, *n, "max_sync_lag");
  for (auto [key, to] : {std::pair{"request_timeout", &c.http.request_timeout},
                         {"admin_failure_window", &c.http.admin_failure_window}}) {
    if (auto* n = h.get(key); n && (*to = duration(origin, *n, key)).count() <= 0)
      bad(origin, *n, "'" + std::string(key) + "' must be a duration above 0, such as \"3s\"");
  }
  for (auto [key, to, lo, hi] :
       {std::tuple{"threads", &c.http.threads, 1, 64},
        {"max_connections", &c.http.max_connections, 16, 1 << 20},
        {"max_connections_per_peer", &c.http.max_connections_per_peer, 1, 1 << 20},
        {"admin_max_failures", &c.http.admin_max_failures, 0, 1'000'000}}) {
    if (auto* n = h.get(key)) *to = static_cast<int>(integer(origin, *n, key, lo, hi));
  }
}

// [daemon]
void daemon_from(const std::string& origin, const toml::table& d, DaemonConfig& c) {
  only_keys(origin, d, "[daemon]", {"log_level", "stats_interval", "run_for"});
  if (auto* n = d.get("log_level")) c.log_level = text(origin, *n, "log_level");
  if (auto* n = d.get("stats_interval")) c.stats_interval = duration(origin, *n, "stats_interval");
  if (auto* n = d.get("run_for")) c.run_for = duration(origin, *n, "run_for");
}

}  // namespace

void load_toml(std::string_view toml_text, const std::string& origin, DaemonConfig& c) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw Error(origin + ":" + std::to_string(src.begin.line) + ":" +
                std::to_string(src.begin.column) + ": " + std::string(e.description()));
  }
  only_keys(origin, root, "the top level",
            {"segment", "namespace", "generator", "ingest", "daemon", "redis", "http"});
  if (const toml::table* seg = root["segment"].as_table()) segment_from(origin, *seg, c);
  if (const toml::array* nss = root["namespace"].as_array()) namespaces_from(origin, *nss, c);
  if (const toml::table* g = root["generator"].as_table()) generator_from(origin, *g, c);
  if (const toml::table* in = root["ingest"].as_table()) ingest_from(origin, *in, c);
  if (const toml::table* r = root["redis"].as_table()) redis_from(origin, *r, c);
  if (const toml::table* h = root["http"].as_table()) http_from(origin, *h, c);
  if (const toml::table* d = root["daemon"].as_table()) daemon_from(origin, *d, c);
}

void load_toml_file(const std::string& path, DaemonConfig& c) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error("cannot read config file " + path + ": " + std::strerror(errno));
  std::string content;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) content.append(buf, n);
  std::fclose(f);
  load_toml(content, path, c);
}

namespace {
// The first line of a credential file, or nothing if there is none; an unreadable one throws,
// naming it.
std::optional<std::string> credential(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    if (errno == ENOENT) return std::nullopt;
    throw Error("credential " + path + ": " + std::strerror(errno));
  }
  std::string line;
  for (int ch; (ch = std::fgetc(f)) != EOF && ch != '\n';) line += static_cast<char>(ch);
  std::fclose(f);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}
}  // namespace

// systemd credentials (LoadCredential=, docs/operations.md): files in $CREDENTIALS_DIRECTORY,
// taken over the config file's values and under the environment's. "redis-password": the Redis
// password (its first line; POSCACHE_REDIS_PASSWORD wins); "admin-token": the HTTP admin token
// file ([http] admin_token_file).
void load_credentials(DaemonConfig& c) {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') return;
  const std::string base(dir);
  const char* env_pw = std::getenv("POSCACHE_REDIS_PASSWORD");
  if (c.writer.redis && (env_pw == nullptr || *env_pw == '\0')) {
    if (auto pw = credential(base + "/redis-password")) c.writer.redis->password = *pw;
  }
  if (credential(base + "/admin-token")) c.http.admin_token_file = base + "/admin-token";
}

void load_env(DaemonConfig& c) {
  if (const char* v = std::getenv("POSCACHE_SEGMENT"); v && *v) c.writer.segment = v;
  if (const char* v = std::getenv("POSCACHE_CAPACITY"); v && *v) {
    char* end = nullptr;
    const unsigned long long cap = std::strtoull(v, &end, 10);
    if (*end != '\0' || cap == 0)
      throw Error("POSCACHE_CAPACITY='" + std::string(v) + "' is not a positive integer");
    c.writer.capacity = cap;
  }
  if (const char* v = std::getenv("POSCACHE_MODE"); v && *v)
    c.writer.mode = parse_mode(v, "POSCACHE_MODE");
  if (const char* v = std::getenv("POSCACHE_LOG_LEVEL"); v && *v) c.log_level = v;
  if (const char* v = std::getenv("POSCACHE_HUGE_PAGES"); v && *v) {
    const std::string s = v;
    if (s == "off" || s == "0" || s == "false")
      c.writer.huge_pages = false;
    else if (s == "on" || s == "1" || s == "true")
      c.writer.huge_pages = true;
    else
      throw Error("POSCACHE_HUGE_PAGES='" + s + "' must be on or off");
  }
  // Redis: any POSCACHE_REDIS_* turns it on; POSCACHE_REDIS=off turns it off.
  auto env_int = [](const char* name, const char* v, long lo, long hi) {
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end != '\0' || x < lo || x > hi) {
      throw Error(std::string(name) + "='" + v + "' is not an integer from " + std::to_string(lo) +
                  " to " + std::to_string(hi));
    }
    return x;
  };
  auto redis = [&]() -> RedisConfig& {
    return c.writer.redis ? *c.writer.redis : c.writer.redis.emplace();
  };
  if (const char* v = std::getenv("POSCACHE_REDIS_HOST"); v && *v) redis().host = v;
  if (const char* v = std::getenv("POSCACHE_REDIS_PORT"); v && *v)
    redis().port = static_cast<int>(env_int("POSCACHE_REDIS_PORT", v, 1, 65535));
  if (const char* v = std::getenv("POSCACHE_REDIS_SOCKET"); v && *v) redis().unix_socket = v;
  if (const char* v = std::getenv("POSCACHE_REDIS_DB"); v && *v)
    redis().db = static_cast<int>(env_int("POSCACHE_REDIS_DB", v, 0, 1 << 20));
  if (const char* v = std::getenv("POSCACHE_REDIS_USERNAME"); v && *v) redis().username = v;
  if (const char* v = std::getenv("POSCACHE_REDIS_PASSWORD"); v && *v) redis().password = v;
  if (const char* v = std::getenv("POSCACHE_REDIS_PREFIX"); v && *v) redis().prefix = v;
  if (const char* v = std::getenv("POSCACHE_REDIS"); v && *v) {
    const std::string s(v);
    if (s == "off" || s == "0" || s == "false")
      c.writer.redis.reset();
    else if (s == "on" || s == "1" || s == "true")
      redis();
    else
      throw Error("POSCACHE_REDIS='" + s + "' must be on or off");
  }
  load_credentials(c);
  if (c.writer.redis) {
    if (auto ok = validate(*c.writer.redis); !ok)
      throw Error("redis settings from the environment: " + ok.error());
  }
}

namespace {
// "a:b:c" -> {"a", "b", "c"}: the parts of a flag's value.
std::vector<std::string> split_colons(std::string_view flag) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= flag.size(); ++i) {
    if (i == flag.size() || flag[i] == ':') {
      parts.emplace_back(flag.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}
}  // namespace

Expected<NamespaceSpec> parse_namespace_flag(std::string_view flag) {
  const std::vector<std::string> parts = split_colons(flag);
  if (parts.size() < 2 || parts.size() > 4) {
    return fail("--namespace '" + std::string(flag) +
                "': expected name:preset[:stale_after[:expire_after]]");
  }
  auto spec = preset(parts[1], parts[0]);
  if (!spec) return fail("--namespace '" + std::string(flag) + "': " + spec.error());
  if (parts.size() > 2) {
    auto d = parse_duration(parts[2]);
    if (!d) return fail("--namespace '" + std::string(flag) + "': stale_after " + d.error());
    spec->stale_after = *d;
  }
  if (parts.size() > 3) {
    auto d = parse_duration(parts[3]);
    if (!d) return fail("--namespace '" + std::string(flag) + "': expire_after " + d.error());
    spec->expire_after = *d;
  }
  if (auto ok = validate(*spec); !ok)
    return fail("--namespace '" + std::string(flag) + "': " + ok.error());
  return spec;
}

Expected<std::pair<std::string, refresh::RefreshPolicy>> parse_refresh_flag(std::string_view flag) {
  const std::vector<std::string> parts = split_colons(flag);
  const std::string what = "--refresh '" + std::string(flag) + "'";
  if (parts.size() < 2 || parts.size() > 4 || parts[0].empty())
    return fail(what + ": expected ns:on[:timeout[:retries]] (on: stale, miss, both, none)");
  refresh::RefreshPolicy p;
  if (!set_refresh_on(parts[1], p))
    return fail(what + ": '" + parts[1] + "' is not stale, miss, both or none");
  if (parts.size() > 2) {
    auto d = parse_duration(parts[2]);
    if (!d || d->count() <= 0)
      return fail(what + ": timeout " + (d ? "must be more than 0" : d.error()));
    p.timeout = *d;
  }
  if (parts.size() > 3) {
    auto r = parse_int64(parts[3]);
    if (!r || *r < 0 || *r > 100) return fail(what + ": retries must be an integer from 0 to 100");
    p.retries = static_cast<std::uint32_t>(*r);
  }
  return std::pair{parts[0], p};
}

}  // namespace poscache::daemon
