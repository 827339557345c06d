// A real redis-server for a test or a benchmark (Debian package redis-server; no mocks of Redis
// anywhere in the suite): a free port, a temporary directory of its own (its log, its unix socket,
// any persistence asked for), stopped and removed with the object. The one launcher of the tests
// (tests/redis/, tests/ingest/, tests/daemon/, tests/follow/) and the benchmarks (bench/).
//
// - Started with posix_spawn, not fork: a fork would copy the caller's page tables, and a timed
//   thread of a benchmark would then take copy-on-write faults on its heap.
// - Killed when the thread that started it ends (setpriv --pdeathsig), so a test that crashes or
//   is killed by a sanitizer leaves no server behind; its output goes to its log file, not to the
//   test's, which ctest waits on (a leaked server holding it would hang the whole run). A server
//   started from a short-lived thread (a benchmark pinning the start to a cpu) turns that off.
// - Ready when it answers PING with anything but LOADING (a password-protected server answers
//   NOAUTH: up), so a server reading an append-only file back is waited for.
// - free_port() closes its probe before redis-server binds, so a test running in parallel may take
//   the port first: redis-server then exits at start, and the server is tried on another port.
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "poscache/redis.hpp"
#include "writer/net/redis_client.hpp"  // client(): links poscache_writer where it is used

namespace poscache::test {

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("free_port: socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("free_port: no port to bind on 127.0.0.1");
  return ntohs(a.sin_port);
}

class RedisServer {
 public:
  struct Options {
    std::vector<std::string> args;  // more redis-server arguments ({"--requirepass", "secret"})
    int cpu = -1;                   // pinned to this cpu (taskset); -1: not pinned
    bool dies_with_starter = true;  // killed when the thread that (re)started it ends
  };

  // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"} or AOF settings.
  explicit RedisServer(std::vector<std::string> extra = {})
      : RedisServer(Options{std::move(extra)}) {}
  explicit RedisServer(Options options) : options_(std::move(options)), port_(free_port()) {
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
    remove_dir();
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return pid_; }  // redis-server's own (taskset and setpriv exec)
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] std::string socket_path() const { return dir_ + "/redis.sock"; }

  // Settings for a writer or a client of this server: short timeouts and backoff, for tests.
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
      throw std::runtime_error("redis-server exited at start on port " + std::to_string(port_) +
                               " (see " + dir_ + "/redis.log)");
  }

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
  std::vector<std::string> command() const {
    std::vector<std::string> args;
    if (options_.dies_with_starter) args.insert(args.end(), {"setpriv", "--pdeathsig", "KILL"});
    if (options_.cpu >= 0) args.insert(args.end(), {"taskset", "-c", std::to_string(options_.cpu)});
    args.insert(args.end(),
                {"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--dir",
                 dir_, "--save", "", "--logfile", dir_ + "/redis.log", "--daemonize", "no",
                 "--unixsocket", socket_path(), "--unixsocketperm", "700"});
    bool aof = false;
    for (const auto& e : options_.args) aof = aof || e == "--appendonly";
    if (!aof) args.insert(args.end(), {"--appendonly", "no"});
    args.insert(args.end(), options_.args.begin(), options_.args.end());
    return args;
  }

  // False if redis-server exited at start (its port taken); throws if it never answered.
  bool try_start() {
    std::vector<std::string> args = command();
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t io;
    posix_spawn_file_actions_init(&io);
    for (const int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO})
      posix_spawn_file_actions_addopen(&io, fd, "/dev/null", O_RDWR, 0);
    const int err = ::posix_spawnp(&pid_, argv[0], &io, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&io);
    if (err != 0) {
      pid_ = -1;
      throw std::runtime_error("cannot start " + args[0] + " (util-linux, redis-server on PATH?)");
    }
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
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop(SIGKILL);
    throw std::runtime_error("redis-server did not answer on port " + std::to_string(port_));
  }

  void remove_dir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Options options_;
  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace poscache::test
