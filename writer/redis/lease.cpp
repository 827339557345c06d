#include "writer/redis/lease.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>

#include "shm/clock.hpp"

namespace poscache::detail {

namespace {

std::int64_t wall_ms() {
  return shm::realtime_ns() / 1'000'000;
}

std::string this_host(const RedisConfig& c) {
  if (!c.host_name.empty()) return c.host_name;
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

template <typename T>
T number(const redisReply* r) {
  T v{};
  if (r != nullptr && r->type == REDIS_REPLY_STRING) std::from_chars(r->str, r->str + r->len, v);
  return v;
}

// Gone: no such process, or a zombie (dead, its parent has not reaped it yet: under a slow
// init a killed writer stays one for seconds, and it holds nothing any more).
bool process_gone(std::int64_t pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return false;
  char buf[512] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  // "pid (comm) S ...": the state follows the last ')' (comm may hold one).
  const std::string_view stat(buf, n);
  const auto close = stat.rfind(')');
  return close != std::string_view::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

}  // namespace

std::string LeaseHolder::describe() const {
  char left[32];
  std::snprintf(left, sizeof left, "%.1f s",
                static_cast<double>(expires_at_ms - wall_ms()) / 1000.0);
  return "epoch " + std::to_string(epoch) + ", host " + host + ", pid " + std::to_string(pid) +
         ", expires in " + left;
}

const char* to_string(Lease::Outcome o) noexcept {
  switch (o) {
    case Lease::Outcome::taken:
      return "taken";
    case Lease::Outcome::retaken:
      return "retaken";
    case Lease::Outcome::ours:
      return "ours";
    case Lease::Outcome::held:
      return "held";
    case Lease::Outcome::superseded:
      return "superseded";
  }
  return "unknown";
}

Lease::Lease(const RedisConfig& config)
    : key_(config.prefix + ":@writer"),
      epoch_key_(config.prefix + ":@epoch"),
      host_(this_host(config)),
      pid_(::getpid()),
      ttl_ms_(config.lease_ttl.count()) {}

Expected<bool> Lease::vacant(RedisClient& client) {
  Args a;
  a.add("HGETALL").add(key_);
  auto r = client.command(a);
  if (!r) return fail(r.error());
  const redisReply* h = r->get();
  if (h->type != REDIS_REPLY_ARRAY) return fail("HGETALL " + key_ + ": " + reply_text(h));
  std::string host;
  std::int64_t pid = 0;
  for (std::size_t i = 0; i + 1 < h->elements; i += 2) {
    const std::string_view name(h->element[i]->str, h->element[i]->len);
    if (name == "host") host.assign(h->element[i + 1]->str, h->element[i + 1]->len);
    if (name == "pid") pid = number<std::int64_t>(h->element[i + 1]);
  }
  return h->elements == 0 || (host == host_ && process_gone(pid));
}

Expected<Lease::Outcome> Lease::take(RedisClient& client) {
  Args a;
  a.add("CLIENT").add("ID");
  auto id = client.command(a);
  if (!id) return fail(id.error());
  if ((*id)->type != REDIS_REPLY_INTEGER) return fail("CLIENT ID: " + reply_text(id->get()));
  const auto me = static_cast<std::uint64_t>((*id)->integer);
  for (int attempt = 0; attempt < 5; ++attempt) {
    Commands c;
    c.cmd("WATCH").add(key_).add(epoch_key_);
    c.cmd("HGETALL").add(key_);
    c.cmd("HGETALL").add(epoch_key_);
    if (auto q = c.append_to(client); !q) return fail(q.error());
    Reply replies[3];
    for (Reply& r : replies) {
      auto got = client.read_reply();
      if (!got) return fail(got.error());
      r = std::move(*got);
    }
    for (int i = 1; i < 3; ++i) {
      if (replies[i]->type != REDIS_REPLY_ARRAY)
        return fail("HGETALL " + (i == 1 ? key_ : epoch_key_) + ": " +
                    reply_text(replies[i].get()) + " (a key of another kind under the prefix?)");
    }
    const redisReply* h = replies[1].get();
    holder_ = {};
    for (std::size_t i = 0; i + 1 < h->elements; i += 2) {
      const std::string_view f(h->element[i]->str, h->element[i]->len);
      const redisReply* v = h->element[i + 1];
      if (f == "epoch") holder_.epoch = number<std::uint64_t>(v);
      if (f == "host") holder_.host.assign(v->str, v->len);
      if (f == "pid") holder_.pid = number<std::int64_t>(v);
      if (f == "expires_at_ms") holder_.expires_at_ms = number<std::int64_t>(v);
    }
    std::uint64_t last = 0, last_client = 0;
    const redisReply* e = replies[2].get();
    for (std::size_t i = 0; i + 1 < e->elements; i += 2) {
      const std::string_view f(e->element[i]->str, e->element[i]->len);
      if (f == "epoch") last = number<std::uint64_t>(e->element[i + 1]);
      if (f == "client") last_client = number<std::uint64_t>(e->element[i + 1]);
    }
    const bool counter_lost = e->elements == 0;  // flushed, or restarted without persistence
    // A fresh epoch is above the last one granted and above the wall clock in µs: a writer that
    // starts after Redis lost the counter still gets an epoch no earlier writer had.
    const std::uint64_t fresh =
        std::max<std::uint64_t>(last + 1, static_cast<std::uint64_t>(wall_ms()) * 1000);
    auto unwatch = [&]() -> Expected<bool> {
      Args u;
      u.add("UNWATCH");
      if (auto r = client.command(u); !r) return fail(r.error());
      return true;
    };
    std::uint64_t next = 0;
    Outcome outcome = Outcome::taken;
    if (h->elements > 0) {  // held
      if (epoch_ != 0 && holder_.epoch == epoch_ && holder_.host == host_ && holder_.pid == pid_) {
        outcome = Outcome::ours;
        next = epoch_;
      } else if (holder_.host == host_ && holder_.pid != pid_ && process_gone(holder_.pid) &&
                 epoch_ == 0) {
        next = fresh;  // our host's writer died (kill -9) and we replace it
      } else {
        if (auto u = unwatch(); !u) return fail(u.error());
        return epoch_ == 0 ? Outcome::held : Outcome::superseded;
      }
    } else if (epoch_ == 0) {
      next = fresh;
    } else if (last == epoch_ || counter_lost) {
      outcome = Outcome::retaken;
      next = epoch_;
    } else {
      if (auto u = unwatch(); !u) return fail(u.error());
      holder_.epoch = last;  // who took it then, as far as we know
      return Outcome::superseded;
    }
    const std::int64_t now = wall_ms();
    if (outcome != Outcome::ours) started_at_ms_ = now;
    c.clear();
    c.cmd("MULTI");
    c.cmd("HSET").add(epoch_key_).add("epoch").add(next).add("client").add(me);
    c.cmd("HSET")
        .add(key_)
        .add("epoch")
        .add(next)
        .add("host")
        .add(host_)
        .add("pid")
        .add_int(pid_)
        .add("started_at_ms")
        .add_int(started_at_ms_)
        .add("renewed_at_ms")
        .add_int(now)
        .add("expires_at_ms")
        .add_int(now + ttl_ms_);
    c.cmd("PEXPIRE").add(key_).add_int(ttl_ms_);
    // The connection fence: the previous holder's connection dies with this EXEC, so nothing it
    // has sent runs after. With no previous holder, or this connection, the filter names this
    // connection, which SKIPME (the default) spares: it kills nothing, but says whether this
    // user may kill (ID 0 would be refused as an argument, not for a permission).
    c.cmd("CLIENT").add("KILL").add("ID").add(last_client == 0 ? me : last_client);
    c.cmd("EXEC");
    if (auto q = c.append_to(client); !q) return fail(q.error());
    Reply exec;
    for (int i = 0; i < 6; ++i) {  // +OK, 4 x +QUEUED, EXEC
      auto got = client.read_reply();
      if (!got) return fail(got.error());
      if (i < 5 && (*got)->type == REDIS_REPLY_ERROR)
        return fail("taking the lease " + key_ + ": " + reply_text(got->get()));
      exec = std::move(*got);
    }
    if (exec->type == REDIS_REPLY_NIL) continue;  // raced: read it again
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 4)
      return fail("taking the lease " + key_ + ": EXEC answered " + reply_text(exec.get()));
    for (std::size_t i = 0; i < 3; ++i) {
      if (exec->element[i]->type == REDIS_REPLY_ERROR)
        return fail("taking the lease " + key_ + ": " + reply_text(exec->element[i]));
    }
    kill_fence_ = exec->element[3]->type == REDIS_REPLY_INTEGER;
    counter_lost_ = counter_lost;
    kill_error_ = kill_fence_ ? std::string() : reply_text(exec->element[3]);
    epoch_ = next;
    holder_ = {next, host_, pid_, now + ttl_ms_};
    renewed(shm::monotonic_ns());
    return outcome;
  }
  return fail("taking the lease " + key_ + ": five attempts raced with other writers");
}

void Lease::add_fence(Commands& out) const {
  out.cmd("WATCH").add(key_);
  out.cmd("HGET").add(key_).add("epoch");
}

Expected<bool> Lease::check_fence(RedisClient& client) {
  for (int i = 0; i < 2; ++i) {
    auto r = client.read_reply();
    if (!r) return fail(r.error());
    if ((*r)->type == REDIS_REPLY_ERROR)
      return fail("fence on " + key_ + ": " + reply_text(r->get()));
    if (i == 1) {
      const auto e = number<std::uint64_t>(r->get());
      if (e == epoch_ && epoch_ != 0) return true;
      holder_ = {};
      holder_.epoch = e;
      return false;
    }
  }
  return false;
}

namespace {
// KEYS[1] the lease; ARGV: epoch, renewed_at_ms, expires_at_ms, ttl in ms. 1 if renewed.
constexpr std::string_view kRenewScript = R"lua(
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'renewed_at_ms', ARGV[2], 'expires_at_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
)lua";
}  // namespace

void Lease::add_renewal(Commands& out) {
  const std::int64_t now = wall_ms();
  out.cmd("EVAL")  // every ttl/3 at most: the script's text costs nothing worth a SCRIPT LOAD
      .add(kRenewScript)
      .add("1")
      .add(key_)
      .add(epoch_)
      .add_int(now)
      .add_int(now + ttl_ms_)
      .add_int(ttl_ms_);
}

void Lease::release(RedisClient& client) {
  if (epoch_ == 0 || !client.connected()) return;
  Commands c;
  add_fence(c);
  if (!c.append_to(client)) return;
  auto ours = check_fence(client);
  if (!ours || !*ours) return;
  c.clear();
  c.cmd("MULTI");
  c.cmd("DEL").add(key_);
  c.cmd("EXEC");
  if (!c.append_to(client)) return;
  for (int i = 0; i < 3; ++i) {
    if (!client.read_reply()) return;
  }
}

}  // namespace poscache::detail
