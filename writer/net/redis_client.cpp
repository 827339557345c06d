#include "writer/net/redis_client.hpp"

#include <hiredis/sds.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/time.h>

#include <charconv>

namespace poscache {

Expected<bool> validate(const RedisConfig& c) {
  if (c.unix_socket.empty()) {
    if (c.host.empty()) return fail("redis host is empty (set a host or a unix socket)");
    if (c.port <= 0 || c.port > 65535)
      return fail("redis port " + std::to_string(c.port) + " is out of range: 1 to 65535");
  }
  if (c.db < 0) return fail("redis database " + std::to_string(c.db) + " is negative");
  if (c.prefix.empty() || c.prefix.size() > 64) {
    return fail("redis prefix '" + c.prefix + "' must be 1 to 64 characters");
  }
  for (char ch : c.prefix) {
    if (ch == '{' || ch == '}' || ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\' ||
        static_cast<unsigned char>(ch) <= ' ' || static_cast<unsigned char>(ch) >= 0x7F) {
      return fail("redis prefix '" + c.prefix + "' contains '" + std::string(1, ch) +
                  "': braces, glob characters, spaces and control characters are not allowed");
    }
  }
  if (c.connect_timeout.count() <= 0) return fail("redis connect_timeout must be positive");
  if (c.command_timeout.count() <= 0) return fail("redis command_timeout must be positive");
  if (c.flush_interval.count() <= 0) return fail("redis flush_interval must be positive");
  if (c.batch_size == 0 || c.batch_size > 100'000) {
    return fail("redis batch_size " + std::to_string(c.batch_size) +
                " is out of range: 1 to 100000");
  }
  if (c.sync_cpu < -1 || c.sync_cpu >= CPU_SETSIZE)
    return fail("redis sync_cpu " + std::to_string(c.sync_cpu) + " is not a cpu number");
  if (c.positions_per_call == 0 || c.positions_per_call > 1000) {
    return fail("redis positions_per_call " + std::to_string(c.positions_per_call) +
                " is out of range: 1 to 1000");
  }
  if (c.reconnect_min.count() <= 0 || c.reconnect_max < c.reconnect_min) {
    return fail("redis reconnect backoff must satisfy 0 < reconnect_min <= reconnect_max");
  }
  if (c.guard == RedisGuard::fence &&
      (c.lease_ttl.count() < 300 || c.lease_ttl > std::chrono::hours(1))) {
    return fail("redis lease_ttl " + std::to_string(c.lease_ttl.count()) +
                " ms is out of range: 300 ms to 1 h");
  }
  if (c.host_name.size() > 255) return fail("redis host_name is longer than 255 characters");
  if (c.refill_rate < 1000 || c.refill_rate > 10'000'000) {
    return fail("redis refill_rate " + std::to_string(c.refill_rate) +
                " is out of range: 1000 to 10000000 positions per second");
  }
  if (c.change_stream_retention.count() != 0 &&
      (c.change_stream_retention < std::chrono::seconds(1) ||
       c.change_stream_retention > std::chrono::hours(24))) {
    return fail("redis change_stream_retention " +
                std::to_string(c.change_stream_retention.count()) +
                " ms is out of range: 0 (no stream) or 1 s to 24 h");
  }
  return true;
}

std::string redis_endpoint(const RedisConfig& c) {
  std::string s =
      c.unix_socket.empty() ? c.host + ":" + std::to_string(c.port) : "unix:" + c.unix_socket;
  if (c.db != 0) s += " db " + std::to_string(c.db);
  return s;
}

namespace detail {

namespace {
timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}
}  // namespace

Args& Args::add(std::uint64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  return add(std::string_view(b, static_cast<std::size_t>(r.ptr - b)));
}

Args& Args::add_int(std::int64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  return add(std::string_view(b, static_cast<std::size_t>(r.ptr - b)));
}

void Args::view(std::vector<const char*>& argv, std::vector<std::size_t>& lens) const {
  for (const auto& [o, n] : off_) {
    argv.push_back(buf_.data() + o);
    lens.push_back(n);
  }
}

void Args::view(std::vector<const char*>& argv, std::vector<std::size_t>& lens, std::size_t first,
                std::size_t n) const {
  for (std::size_t i = first; i < first + n; ++i) {
    argv.push_back(buf_.data() + off_[i].first);
    lens.push_back(off_[i].second);
  }
}

Expected<bool> Commands::append_to(RedisClient& client) {
  close();
  std::size_t from = 0;
  for (const std::size_t end : ends_) {
    if (auto a = client.append(args_, from, end - from); !a) return a;
    from = end;
  }
  return true;
}

std::string reply_text(const redisReply* r) {
  if (r == nullptr) return "no reply";
  switch (r->type) {
    case REDIS_REPLY_ERROR:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_STRING:
      return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "nil";
    case REDIS_REPLY_ARRAY:
      return "array of " + std::to_string(r->elements);
    default:
      return "reply of type " + std::to_string(r->type);
  }
}

namespace {
// SIGPIPE blocked on this thread while hiredis writes: a connection the server closed (Redis
// killed this client: a writer taking the lease ends the old holder's connection; a restart)
// makes write() fail with EPIPE, reported as a lost connection, instead of killing the process
// that embeds the writer. A SIGPIPE raised meanwhile is consumed, unless one was pending before.
class NoSigpipe {
 public:
  NoSigpipe() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~NoSigpipe() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  NoSigpipe(const NoSigpipe&) = delete;
  NoSigpipe& operator=(const NoSigpipe&) = delete;

 private:
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false;
};
}  // namespace

std::string RedisClient::fail_text(const char* what) {
  std::string msg = "redis " + endpoint_ + ": " + what + ": ";
  msg += ctx_ && ctx_->err != 0 ? ctx_->errstr : "connection lost";
  ctx_.reset();
  return msg;
}

Expected<RedisClient> RedisClient::connect(const RedisConfig& config) {
  RedisClient c;
  c.endpoint_ = redis_endpoint(config);
  const timeval ct = to_timeval(config.connect_timeout);
  redisContext* raw = config.unix_socket.empty()
                          ? redisConnectWithTimeout(config.host.c_str(), config.port, ct)
                          : redisConnectUnixWithTimeout(config.unix_socket.c_str(), ct);
  if (raw == nullptr) return fail("redis " + c.endpoint_ + ": cannot allocate a connection");
  c.ctx_.reset(raw);
  if (raw->err != 0)
    return fail("redis " + c.endpoint_ + ": cannot connect: " + std::string(raw->errstr));
  if (redisSetTimeout(raw, to_timeval(config.command_timeout)) != REDIS_OK) {
    return fail(c.fail_text("cannot set the command timeout"));
  }
  if (config.unix_socket.empty())
    redisEnableKeepAlive(raw);  // TCP only: fails (and poisons the context) on a unix socket
  Args a;
  if (!config.password.empty()) {
    a.add("AUTH");
    if (!config.username.empty()) a.add(config.username);
    a.add(config.password);
    auto r = c.command(a);
    if (!r) return fail(r.error());
    if ((*r)->type == REDIS_REPLY_ERROR) {
      return fail("redis " + c.endpoint_ + ": authentication as '" +
                  (config.username.empty() ? std::string("default") : config.username) +
                  "' refused: " + reply_text(r->get()));
    }
  }
  if (config.db != 0) {
    a.clear();
    a.add("SELECT").add_int(config.db);
    auto r = c.command(a);
    if (!r) return fail(r.error());
    if ((*r)->type == REDIS_REPLY_ERROR) {
      return fail("redis " + c.endpoint_ + ": SELECT " + std::to_string(config.db) +
                  " refused: " + reply_text(r->get()));
    }
  }
  a.clear();
  a.add("PING");
  auto r = c.command(a);
  if (!r) return fail(r.error());
  if ((*r)->type == REDIS_REPLY_ERROR) {  // e.g. NOAUTH when a password is required but not set
    return fail("redis " + c.endpoint_ + ": PING refused: " + reply_text(r->get()));
  }
  return c;
}

Expected<Reply> RedisClient::command(const Args& args) {
  if (auto a = append(args); !a) return fail(a.error());
  return read_reply();
}

Expected<bool> RedisClient::append(const Args& args) {
  return append({&args});
}

Expected<bool> RedisClient::append(std::initializer_list<const Args*> parts) {
  if (!ctx_) return fail("redis " + endpoint_ + ": not connected");
  argv_.clear();
  lens_.clear();
  for (const Args* a : parts) a->view(argv_, lens_);
  if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv_.size()), argv_.data(),
                             lens_.data()) != REDIS_OK) {
    return fail(fail_text("cannot queue a command"));
  }
  return true;
}

Expected<bool> RedisClient::append(const Args& args, std::size_t first, std::size_t n) {
  if (!ctx_) return fail("redis " + endpoint_ + ": not connected");
  argv_.clear();
  lens_.clear();
  args.view(argv_, lens_, first, n);
  if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv_.size()), argv_.data(),
                             lens_.data()) != REDIS_OK) {
    return fail(fail_text("cannot queue a command"));
  }
  return true;
}

Expected<Reply> RedisClient::read_reply() {
  if (!ctx_) return fail("redis " + endpoint_ + ": not connected");
  // Commands still in the output buffer go first (redisGetReply would write them itself,
  // without the SIGPIPE guard of send()).
  if (sdslen(ctx_->obuf) > 0) {
    if (auto s = send(); !s) return fail(s.error());
  }
  void* raw = nullptr;
  if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
    return fail(fail_text("no reply"));
  }
  return Reply(static_cast<redisReply*>(raw));
}

Expected<bool> RedisClient::send() {
  if (!ctx_) return fail("redis " + endpoint_ + ": not connected");
  const NoSigpipe guard;
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) return fail(fail_text("cannot send"));
  }
  return true;
}

Expected<std::string> RedisClient::load_script(std::string_view source) {
  Args a;
  a.add("SCRIPT").add("LOAD").add(source);
  auto r = command(a);
  if (!r) return fail(r.error());
  if ((*r)->type != REDIS_REPLY_STRING) {
    return fail("redis " + endpoint_ + ": SCRIPT LOAD failed: " + reply_text(r->get()));
  }
  return std::string((*r)->str, (*r)->len);
}

}  // namespace detail
}  // namespace poscache
