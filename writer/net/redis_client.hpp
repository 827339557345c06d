// A small RAII layer over hiredis (synchronous API): connect with timeouts, AUTH, SELECT,
// load the scripts, pipeline commands. Used only by the writer's sync thread and warm start;
// every failure comes back as text naming what failed, never as an exception or a crash.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/error.hpp"
#include "poscache/redis.hpp"

namespace poscache::detail {

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Arguments of one command, kept in one growing buffer (no allocation once warmed up).
class Args {
 public:
  void clear() {
    buf_.clear();
    off_.clear();
  }
  Args& add(std::string_view s) {
    off_.push_back({buf_.size(), s.size()});
    buf_.append(s);
    return *this;
  }
  Args& add(std::uint64_t v);
  Args& add_int(std::int64_t v);
  // One argument made of several pieces, without a temporary string.
  Args& add_concat(std::initializer_list<std::string_view> parts) {
    std::size_t n = 0;
    const std::size_t o = buf_.size();
    for (std::string_view p : parts) {
      buf_.append(p);
      n += p.size();
    }
    off_.push_back({o, n});
    return *this;
  }
  Args& append(const Args& other) {
    for (const auto& [o, n] : other.off_) add(std::string_view(other.buf_.data() + o, n));
    return *this;
  }
  [[nodiscard]] std::size_t size() const noexcept { return off_.size(); }
  // Pointers for hiredis; valid until the next add().
  // Appends this command's pointers to argv/lens (valid until the next add()).
  void view(std::vector<const char*>& argv, std::vector<std::size_t>& lens) const;
  // The same for arguments [first, first + n).
  void view(std::vector<const char*>& argv, std::vector<std::size_t>& lens, std::size_t first,
            std::size_t n) const;

 private:
  std::string buf_;
  std::vector<std::pair<std::size_t, std::size_t>> off_;
};

class RedisClient;

// Many commands in one buffer (a transaction's body): cmd() starts one and returns the Args to
// add its arguments to; append_to() queues them all on a client, in order.
class Commands {
 public:
  void clear() {
    args_.clear();
    ends_.clear();
  }
  Args& cmd(std::string_view name) {
    close();
    args_.add(name);
    return args_;
  }
  // A whole command built elsewhere.
  void add(const Args& command) {
    close();
    args_.append(command);
  }
  // Commands so far (the one being built included).
  [[nodiscard]] std::size_t size() {
    close();
    return ends_.size();
  }
  Expected<bool> append_to(RedisClient& client);

 private:
  void close() {
    if (args_.size() > (ends_.empty() ? 0 : ends_.back())) ends_.push_back(args_.size());
  }
  Args args_;
  std::vector<std::size_t> ends_;  // argument count after each command
};

class RedisClient {
 public:
  // Connects, authenticates, selects the database. The error names the endpoint and the step.
  static Expected<RedisClient> connect(const RedisConfig& config);
  RedisClient() = default;
  RedisClient(RedisClient&&) noexcept = default;
  RedisClient& operator=(RedisClient&&) noexcept = default;

  [[nodiscard]] bool connected() const noexcept { return ctx_ != nullptr; }
  // One command, one round trip. An error reply is returned as a reply (type REDIS_REPLY_ERROR);
  // a connection failure as an error (and the client is then closed).
  Expected<Reply> command(const Args& args);
  // Pipelining: append many, then read as many replies.
  Expected<bool> append(const Args& args);
  // One command made of several argument lists, in order (no copy into one list first).
  Expected<bool> append(std::initializer_list<const Args*> parts);
  // Arguments [first, first + n) of `args` as one command.
  Expected<bool> append(const Args& args, std::size_t first, std::size_t n);
  Expected<Reply> read_reply();
  // Writes what append() queued to the socket now (blocking until sent), so that the server
  // works on it while this thread prepares the next pipeline.
  Expected<bool> send();
  void close() noexcept { ctx_.reset(); }

  // SCRIPT LOAD; returns the SHA1 to call it by.
  Expected<std::string> load_script(std::string_view source);

 private:
  struct CtxDeleter {
    void operator()(redisContext* c) const noexcept {
      if (c != nullptr) redisFree(c);
    }
  };
  std::string fail_text(const char* what);
  std::unique_ptr<redisContext, CtxDeleter> ctx_;
  std::string endpoint_;
  std::vector<const char*> argv_;
  std::vector<std::size_t> lens_;
};

// "ERR ..." text of an error reply, or a description of an unexpected reply type.
std::string reply_text(const redisReply* r);

}  // namespace poscache::detail
