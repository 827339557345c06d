// --print-config: the settings in effect (file, environment, flags) as a TOML file the writer
// takes back with --config, to the same settings (DaemonConfigFileTest.PrintConfigRoundTrips).
// Settings that only a flag gives (--fresh) and secrets (the Redis password) are comments.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "poscache/version.h"
#include "writer/daemon/config.hpp"

namespace poscache::daemon {
namespace {

std::string duration_text(std::chrono::nanoseconds d) {
  const std::int64_t n = d.count();
  if (n == 0) return "0";
  struct Unit {
    std::int64_t ns;
    const char* name;
  };
  for (const Unit u : {Unit{3'600'000'000'000, "h"}, Unit{60'000'000'000, "m"},
                       Unit{1'000'000'000, "s"}, Unit{1'000'000, "ms"}, Unit{1'000, "us"}}) {
    if (n % u.ns == 0) return std::to_string(n / u.ns) + u.name;
  }
  return std::to_string(n) + "ns";
}

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quoted(const std::string& v) {
  std::string q = "\"";
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      q += '\\';
      q += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      q += buf;
    } else {
      q += ch;
    }
  }
  q += '"';
  return q;
}

std::string octal(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", v);
  return quoted(buf);
}

class Toml {
 public:
  void table(const char* name) {
    if (!out_.empty()) out_ += '\n';
    out_.append("[").append(name).append("]\n");
  }
  void line(const char* key, const std::string& value) {
    out_.append(key).append(" = ").append(value).append("\n");
  }
  void flag(const char* key, bool b) { line(key, b ? "true" : "false"); }
  void duration(const char* key, std::chrono::nanoseconds d) {
    line(key, quoted(duration_text(d)));
  }
  void comment(const std::string& text) { out_.append("# ").append(text).append("\n"); }
  std::string& text() { return out_; }

 private:
  std::string out_;
};

}  // namespace

std::string print_config(const DaemonConfig& c) {
  Toml t;
  t.comment(std::string("poscache-writer ") + POSCACHE_VERSION +
            ": the settings in effect, as a file `poscache-writer --config` takes back");
  const WriterConfig& w = c.writer;
  t.table("segment");
  t.line("name", quoted(w.segment));
  t.line("capacity", std::to_string(w.capacity));
  t.line("mode", octal(static_cast<unsigned>(w.mode)));
  t.duration("heartbeat_interval", w.heartbeat_interval);
  t.flag("huge_pages", w.huge_pages);
  t.flag("change_ring", w.change_ring);
  t.flag("recreate", w.recreate_on_mismatch);
  t.comment(std::string("fresh = ") + (w.fresh ? "true" : "false") + "  (the --fresh flag only)");

  t.table("generator");
  t.flag("enabled", c.generator.enabled);
  t.line("rate", std::to_string(static_cast<std::uint64_t>(c.generator.rate)));
  t.line("accounts", std::to_string(c.generator.accounts));
  t.line("instruments", std::to_string(c.generator.instruments));
  t.line("seed", std::to_string(c.generator.seed));

  t.table("ingest");
  t.flag("socket", c.ingest.socket);
  t.flag("rings", c.ingest.socket && c.ingest.rings);
  t.flag("busy_poll", c.ingest.busy_poll);
  const auto& sc = c.ingest.socket_config;
  t.line("socket_path", quoted(sc.path.empty() ? ingest::default_socket_path(w.segment) : sc.path));
  t.line("socket_mode", octal(static_cast<unsigned>(sc.effective_mode())));
  t.line("socket_group", quoted(sc.group));
  t.line("trade_window", std::to_string(c.ingest.trade_window));
  const auto& st = c.ingest.stream;
  std::string list;
  for (const auto& s : st.streams) {
    if (!list.empty()) list += ", ";
    list += quoted(s);
  }
  t.line("streams", "[" + list + "]");
  t.line("stream_group",
         quoted(st.group.empty() ? ingest::default_stream_group(w.segment) : st.group));
  t.line("stream_consumer", quoted(st.consumer));
  t.line("stream_start", quoted(st.start));
  t.line("stream_batch", std::to_string(st.batch));
  t.line("stream_rejected_maxlen", std::to_string(st.rejected_maxlen));

  t.table("http");
  if (c.http.listen.empty())
    t.comment("listen = \"127.0.0.1:9108\"  (off: a listen address turns it on)");
  else
    t.line("listen", quoted(c.http.listen));
  if (!c.http.admin_token_file.empty()) t.line("admin_token_file", quoted(c.http.admin_token_file));
  t.duration("max_sync_lag", c.http.max_sync_lag);
  t.line("threads", std::to_string(c.http.threads));
  t.duration("request_timeout", c.http.request_timeout);
  t.line("max_connections", std::to_string(c.http.max_connections));
  t.line("max_connections_per_peer", std::to_string(c.http.max_connections_per_peer));
  t.line("admin_max_failures", std::to_string(c.http.admin_max_failures));
  t.duration("admin_failure_window", c.http.admin_failure_window);

  t.table("redis");
  t.flag("enabled", w.redis.has_value());
  if (w.redis) {
    const RedisConfig& r = *w.redis;
    t.line("host", quoted(r.host));
    t.line("port", std::to_string(r.port));
    t.line("unix_socket", quoted(r.unix_socket));
    t.line("db", std::to_string(r.db));
    t.line("username", quoted(r.username));
    t.comment(std::string("password = ") + (r.password.empty() ? "(none)" : "(set: not printed)"));
    t.line("prefix", quoted(r.prefix));
    t.duration("flush_interval", r.flush_interval);
    t.line("batch_size", std::to_string(r.batch_size));
    t.duration("connect_timeout", r.connect_timeout);
    t.duration("command_timeout", r.command_timeout);
    t.flag("warm_start", r.warm_start);
    t.duration("close_timeout", r.close_timeout);
    t.line("guard", quoted(r.guard == RedisGuard::fence ? "fence" : "scripts"));
    t.duration("lease_ttl", r.lease_ttl);
    t.line("host_name", quoted(r.host_name));
    t.line("positions_per_call", std::to_string(r.positions_per_call));
    t.line("refill_rate", std::to_string(r.refill_rate));
    t.duration("change_stream_retention", r.change_stream_retention);
  }

  t.table("daemon");
  t.line("log_level", quoted(c.log_level));
  t.duration("stats_interval", c.stats_interval);
  t.duration("run_for", c.run_for);

  // Namespaces last: each with its fields spelled out (a preset's included).
  for (const NamespaceSpec& n : w.namespaces) {
    std::string& out = t.text();
    out += "\n[[namespace]]\n";
    t.line("name", quoted(n.name));
    t.duration("stale_after", n.stale_after);
    t.duration("expire_after", n.expire_after);
    const bool unsynced = std::find(c.unsynced_namespaces.begin(), c.unsynced_namespaces.end(),
                                    n.name) != c.unsynced_namespaces.end();
    t.line("sync", quoted(unsynced ? "none" : "redis"));
    if (auto r = c.refresh.find(n.name); r != c.refresh.end()) {
      const refresh::RefreshPolicy& p = r->second;
      t.line("refresh", quoted(p.on_stale && p.on_miss ? "both"
                               : p.on_stale            ? "stale"
                               : p.on_miss             ? "miss"
                                                       : "none"));
      t.duration("refresh_timeout", p.timeout);
      t.line("refresh_retries", std::to_string(p.retries));
      t.line("refresh_max_in_flight", std::to_string(p.max_in_flight));
      char ahead[32];
      std::snprintf(ahead, sizeof ahead, "%g", p.ahead);  // 0.8, not 0.800000
      t.line("refresh_ahead", ahead);
      t.duration("negative_ttl", p.negative_ttl);
      t.line("rebuild_on_empty", p.rebuild_on_empty ? "true" : "false");
    }
    std::string fields = "[\n";
    for (const FieldSpec& f : n.fields) {
      fields +=
          "  { name = " + quoted(f.name) + ", type = " + quoted(std::string(to_string(f.type)));
      if (f.type == FieldType::decimal) fields += ", scale = " + std::to_string(f.scale);
      if (f.type == FieldType::text) fields += ", length = " + std::to_string(f.length);
      fields += " },\n";
    }
    t.line("fields", fields + "]");
  }
  return t.text();
}

// "key = value" lines of print_config() by key: what a reload compares.
// --print-config's TOML (print_config.cpp) as "table.key" -> value; each [[namespace]] table's
// keys as "namespace.<name>.key", and a field list's lines joined into its value.
std::map<std::string, std::string> settings_of(const std::string& printed) {
  std::map<std::string, std::string> out;
  std::string table, list_key;
  std::size_t start = 0;
  while (start < printed.size()) {
    const std::size_t nl = printed.find('\n', start);
    const std::string line = printed.substr(start, nl - start);
    const std::size_t eq = line.find(" = ");
    if (!list_key.empty()) {  // inside "fields = [ ... ]"
      out[list_key] += line;
      if (line == "]") list_key.clear();
    } else if (line == "[[namespace]]") {
      table = "namespace";
    } else if (line.size() > 2 && line.front() == '[') {
      table = line.substr(1, line.size() - 2);
    } else if (eq != std::string::npos && line.front() != '#') {
      const std::string key = line.substr(0, eq), value = line.substr(eq + 3);
      if (table == "namespace" && key == "name") table = "namespace." + value;
      const std::string full = table.empty() ? key : table + "." + key;
      out[full] = value;
      if (value == "[") list_key = full;
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string namespace_summary(const NamespaceSpec& n) {
  std::string s = n.name + " (" + std::to_string(n.fields.size()) + " fields";
  if (n.stale_after.count() > 0)
    s += ", stale after " + std::to_string(n.stale_after.count() / 1'000'000) + " ms";
  if (n.expire_after.count() > 0)
    s += ", expire after " + std::to_string(n.expire_after.count() / 1'000'000) + " ms";
  return s + ")";
}
}  // namespace poscache::daemon
