// A real redis-server for a test: a free port, a temporary directory, stopped afterwards.
// (Debian package redis-server; no mocks of Redis anywhere in the suite.)
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "poscache/decimal.hpp"
#include "poscache/reader.hpp"
#include "poscache/redis.hpp"
#include "poscache/schema.hpp"
#include "writer/net/redis_client.hpp"

namespace poscache::test {

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("bind failed");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class RedisServer {
 public:
  // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"} or AOF settings.
  // free_port() closes its probe socket before redis-server binds, so a test running in parallel
  // may take the port first: then redis-server exits at start, and it is tried on another port.
  explicit RedisServer(std::vector<std::string> extra = {})
      : extra_(std::move(extra)), port_(free_port()) {
    char tmpl[] = "/tmp/poscache_redis_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    for (int attempt = 1;; ++attempt) {
      if (try_start()) return;
      if (attempt == 5)
        throw std::runtime_error("redis-server exited at start five times (see " + dir_ +
                                 "/redis.log)");
      port_ = free_port();
    }
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] std::string socket_path() const { return dir_ + "/redis.sock"; }

  RedisConfig config(const std::string& prefix = "poscache:v1") const {
    RedisConfig c;
    c.host = "127.0.0.1";
    c.port = port_;
    c.prefix = prefix;
    c.flush_interval = std::chrono::milliseconds(2);
    c.reconnect_min = std::chrono::milliseconds(20);
    c.reconnect_max = std::chrono::milliseconds(200);
    c.connect_timeout = std::chrono::milliseconds(500);
    c.command_timeout = std::chrono::milliseconds(2000);
    c.close_timeout = std::chrono::milliseconds(3000);
    return c;
  }

  // (Re)starts the server on its port; throws if it does not come up.
  void start() {
    if (!try_start())
      throw std::runtime_error(
          "redis-server exited at start (is the redis-server package installed?)");
  }

 private:
  // False if redis-server exited at start (its port taken); throws if it never answered.
  bool try_start() {
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_,
                                     "--save",
                                     "",
                                     "--logfile",
                                     dir_ + "/redis.log",
                                     "--daemonize",
                                     "no",
                                     "--unixsocket",
                                     dir_ + "/redis.sock"};
    bool aof = false;
    for (const auto& e : extra_) aof = aof || e == "--appendonly";
    if (!aof) args.insert(args.end(), {"--appendonly", "no"});
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      // The server dies with the test (a test that crashes or is killed by a sanitizer leaves no
      // server behind), and does not hold the test's output open (ctest waits for that pipe to
      // close: a leaked server would hang the whole run). It logs to its own file.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (const int null = ::open("/dev/null", O_RDWR); null >= 0) {
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
        ::dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) ::close(null);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    // Ready when it answers PING with PONG (a password-protected server answers NOAUTH: also
    // up), not LOADING: a server with an append-only file answers that while it reads it back.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      redisContext* c = redisConnect("127.0.0.1", port_);
      if (c != nullptr && c->err == 0) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
        const bool ok = r != nullptr && !(r->type == REDIS_REPLY_ERROR &&
                                          std::string(r->str).rfind("LOADING", 0) == 0);
        if (r != nullptr) freeReplyObject(r);
        redisFree(c);
        if (ok) return true;
      } else if (c != nullptr) {
        redisFree(c);
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("redis-server did not answer on port " + std::to_string(port_));
  }

 public:
  // SIGKILL (a crash) or SIGTERM (a clean shutdown).
  void stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // A client for checks, connected to this server.
  detail::RedisClient client(const std::string& password = {}) const {
    RedisConfig c = config();
    c.password = password;
    auto r = detail::RedisClient::connect(c);
    if (!r) throw std::runtime_error(r.error());
    return std::move(*r);
  }

 private:
  std::vector<std::string> extra_;
  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

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
