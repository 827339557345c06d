// The general Redis client (writer/net/redis_client.hpp) against a real redis-server started by
// each test (tests/redis_server.hpp): replies and error replies, pipelines of argument lists,
// binary arguments, authentication and database selection with errors naming the endpoint and
// the step, timeouts, scripts, and a connection the server ends: an error, never a SIGPIPE that
// kills the process embedding the writer.
#include "writer/net/redis_client.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "redis_server.hpp"
#include "test_util.hpp"

namespace poscache::detail {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;

Args args(std::initializer_list<std::string_view> parts) {
  Args a;
  for (std::string_view p : parts) a.add(p);
  return a;
}
// One command's reply; fails the test on a lost connection.
Reply run(RedisClient& c, std::initializer_list<std::string_view> parts) {
  auto r = c.command(args(parts));
  EXPECT_TRUE(r) << r.error();
  return r ? std::move(*r) : Reply();
}
std::string text(const Reply& r) {
  return reply_text(r.get());
}

TEST(RedisClientTest, ACommandGetsItsReplyAndAnErrorReplyIsAReplyNotAFailure) {
  RedisServer srv;
  auto c = RedisClient::connect(srv.config());
  ASSERT_TRUE(c) << c.error();
  EXPECT_TRUE(c->connected());
  EXPECT_EQ(text(run(*c, {"SET", "k", "v"})), "OK");
  const Reply got = run(*c, {"GET", "k"});
  ASSERT_EQ(got->type, REDIS_REPLY_STRING);
  EXPECT_EQ(text(got), "v");
  EXPECT_EQ(run(*c, {"GET", "absent"})->type, REDIS_REPLY_NIL);
  EXPECT_EQ(text(run(*c, {"GET", "absent"})), "nil");
  const Reply wrong = run(*c, {"INCR", "k"});  // not an integer
  ASSERT_EQ(wrong->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(text(wrong).rfind("ERR", 0), 0u) << text(wrong);
  EXPECT_TRUE(c->connected());  // an error reply leaves the connection as it was
  EXPECT_EQ(run(*c, {"INCRBY", "n", "-5"})->integer, -5);
  EXPECT_EQ(text(run(*c, {"RPUSH", "l", "a", "b"})), "2");
  EXPECT_EQ(text(run(*c, {"LRANGE", "l", "0", "-1"})), "array of 2");
}

TEST(RedisClientTest, ArgumentsAreBinarySafeAndNumbersAreWrittenExactly) {
  RedisServer srv;
  auto c = RedisClient::connect(srv.config());
  ASSERT_TRUE(c) << c.error();
  const std::string binary("a\0b\r\n$3\r\nc\xff", 11);
  Args a;
  a.add("SET").add("bin").add(binary);
  ASSERT_TRUE(c->command(a));
  const Reply got = run(*c, {"GET", "bin"});
  EXPECT_EQ(std::string(got->str, got->len), binary);
  a.clear();
  a.add("SET")
      .add_concat({"pre", ":", "{w1}", ":", "SOL"})
      .add(std::uint64_t{18446744073709551615u});
  ASSERT_TRUE(c->command(a));
  EXPECT_EQ(text(run(*c, {"GET", "pre:{w1}:SOL"})), "18446744073709551615");
  a.clear();
  a.add("SET").add("neg").add_int(INT64_MIN);
  ASSERT_TRUE(c->command(a));
  EXPECT_EQ(text(run(*c, {"GET", "neg"})), "-9223372036854775808");
  EXPECT_EQ(a.size(), 3u);
}

// Many commands sent at once and their replies read in order: whole argument lists, several lists
// as one command, a range of one list, and a Commands buffer of many.
TEST(RedisClientTest, APipelineSendsEveryCommandAndRepliesComeInOrder) {
  RedisServer srv;
  auto c = RedisClient::connect(srv.config());
  ASSERT_TRUE(c) << c.error();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(c->append(args({"RPUSH", "seq", std::to_string(i)})));
  const Args head = args({"HSET", "h"}), body = args({"f1", "1", "f2", "2"});
  ASSERT_TRUE(c->append({&head, &body}));
  const Args many = args({"x", "SET", "ranged", "yes", "y"});
  ASSERT_TRUE(c->append(many, 1, 3));  // SET ranged yes
  ASSERT_TRUE(c->send());
  for (int i = 0; i < 1000; ++i) {
    auto r = c->read_reply();
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ((*r)->integer, i + 1);  // in order
  }
  EXPECT_EQ((*c->read_reply())->integer, 2);
  EXPECT_EQ(text(*c->read_reply()), "OK");
  EXPECT_EQ(text(run(*c, {"HGET", "h", "f2"})), "2");
  EXPECT_EQ(text(run(*c, {"GET", "ranged"})), "yes");

  Commands tx;
  tx.cmd("MULTI");
  tx.cmd("SET").add("a").add("1");
  tx.add(args({"INCR", "a"}));
  tx.cmd("EXEC");
  EXPECT_EQ(tx.size(), 4u);
  ASSERT_TRUE(tx.append_to(*c));
  EXPECT_EQ(text(*c->read_reply()), "OK");      // MULTI
  EXPECT_EQ(text(*c->read_reply()), "QUEUED");  // SET
  EXPECT_EQ(text(*c->read_reply()), "QUEUED");  // INCR
  const auto exec = c->read_reply();            // read_reply sends what is queued first
  ASSERT_TRUE(exec) << exec.error();
  ASSERT_EQ((*exec)->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ((*exec)->element[1]->integer, 2);
  tx.clear();
  EXPECT_EQ(tx.size(), 0u);
}

TEST(RedisClientTest, AuthenticationAndDatabaseSelectionFailNamingTheEndpointAndTheStep) {
  RedisServer srv({"--requirepass", "right"});
  RedisConfig cfg = srv.config();
  const std::string endpoint = "redis 127.0.0.1:" + std::to_string(srv.port());
  auto none = RedisClient::connect(cfg);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().rfind(endpoint + ": PING refused: NOAUTH", 0), 0u) << none.error();
  cfg.password = "wrong";
  auto wrong = RedisClient::connect(cfg);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().rfind(endpoint + ": authentication as 'default' refused: ", 0), 0u)
      << wrong.error();
  cfg.password = "right";
  cfg.db = 3;
  auto right = RedisClient::connect(cfg);
  ASSERT_TRUE(right) << right.error();
  run(*right, {"SET", "in3", "x"});
  auto admin = srv.client("right");
  EXPECT_EQ(run(admin, {"EXISTS", "in3"})->integer, 0);  // db 0
  run(admin, {"SELECT", "3"});
  EXPECT_EQ(run(admin, {"EXISTS", "in3"})->integer, 1);
  // A user of its own (ACL): named in the error when refused.
  run(admin, {"ACL", "SETUSER", "feeder", "on", ">pw", "~*", "+@all"});
  cfg.db = 0;
  cfg.username = "feeder";
  cfg.password = "pw";
  EXPECT_TRUE(RedisClient::connect(cfg));
  cfg.password = "nope";
  auto bad_user = RedisClient::connect(cfg);
  ASSERT_FALSE(bad_user);
  EXPECT_NE(bad_user.error().find("authentication as 'feeder' refused"), std::string::npos)
      << bad_user.error();
  cfg.password = "pw";
  cfg.db = 99;  // beyond the server's 16
  auto bad_db = RedisClient::connect(cfg);
  ASSERT_FALSE(bad_db);
  EXPECT_EQ(bad_db.error().rfind(
                "redis 127.0.0.1:" + std::to_string(srv.port()) + " db 99: SELECT 99 refused: ", 0),
            0u)
      << bad_db.error();
}

TEST(RedisClientTest, NoServerIsAnErrorNamingTheEndpointAndAUnixSocketWorksLikeTcp) {
  const int port = test::free_port();  // nothing listens there
  RedisConfig cfg;
  cfg.port = port;
  cfg.connect_timeout = 500ms;
  auto c = RedisClient::connect(cfg);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().rfind("redis 127.0.0.1:" + std::to_string(port) + ": cannot connect: ", 0),
            0u)
      << c.error();
  RedisServer srv;
  cfg = srv.config();
  cfg.unix_socket = srv.socket_path();
  auto u = RedisClient::connect(cfg);
  ASSERT_TRUE(u) << u.error();
  EXPECT_EQ(text(run(*u, {"PING"})), "PONG");
  cfg.unix_socket = srv.dir() + "/nothing.sock";
  auto missing = RedisClient::connect(cfg);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().rfind("redis unix:" + srv.dir() + "/nothing.sock: cannot connect: ", 0),
            0u)
      << missing.error();
}

// A server that does not answer within command_timeout: the read fails naming the endpoint, the
// client closes, and every later call says it is not connected instead of blocking.
TEST(RedisClientTest, AServerThatDoesNotAnswerInTimeIsAnErrorAndTheClientCloses) {
  RedisServer srv;
  RedisConfig cfg = srv.config();
  cfg.command_timeout = 200ms;
  auto c = RedisClient::connect(cfg);
  ASSERT_TRUE(c) << c.error();
  auto admin = srv.client();
  run(admin, {"CLIENT", "PAUSE", "1500", "ALL"});  // every client's commands wait, this one's too
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c->command(args({"GET", "k"}));
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().rfind("redis 127.0.0.1:" + std::to_string(srv.port()) + ": no reply: ", 0),
            0u)
      << r.error();
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 1200ms);  // not until the pause ends
  EXPECT_FALSE(c->connected());
  auto again = c->command(args({"PING"}));
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().find("not connected"), std::string::npos) << again.error();
  EXPECT_FALSE(c->send());
  EXPECT_FALSE(c->read_reply());
}

TEST(RedisClientTest, AScriptIsLoadedByItsShaAndABadOneIsRefusedNamingWhy) {
  RedisServer srv;
  auto c = RedisClient::connect(srv.config());
  ASSERT_TRUE(c) << c.error();
  auto sha = c->load_script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  ASSERT_TRUE(sha) << sha.error();
  EXPECT_EQ(sha->size(), 40u);
  EXPECT_EQ(run(*c, {"EVALSHA", *sha, "1", "counter", "7"})->integer, 7);
  auto bad = c->load_script("this is not lua");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find(": SCRIPT LOAD failed: ERR"), std::string::npos) << bad.error();
  EXPECT_TRUE(c->connected());
}

// The server ends the connection (CLIENT KILL, as a writer taking the lease ends the old
// holder's): writing to it fails with EPIPE. The client reports a lost connection; the process
// is not killed by SIGPIPE, no SIGPIPE is left pending, and the caller's signal mask is as it was.
// Run in a child process, so that a SIGPIPE death is a failed check, not a crashed suite.
TEST(RedisClientTest, AConnectionTheServerEndedIsAnErrorNeverASigpipe) {
  RedisServer srv;
  const pid_t child = test::fork_child([&] {
    auto c = RedisClient::connect(srv.config());
    if (!c) return 10;
    const long long id = run(*c, {"CLIENT", "ID"})->integer;
    auto admin = srv.client();
    run(admin, {"CLIENT", "KILL", "ID", std::to_string(id)});
    std::this_thread::sleep_for(50ms);  // the close reaches this end
    sigset_t before;
    pthread_sigmask(SIG_SETMASK, nullptr, &before);
    const std::string big(1 << 20, 'x');
    std::string why;
    for (int i = 0; i < 50 && why.empty(); ++i) {
      if (auto a = c->append(args({"SET", "k", big})); !a) {
        why = a.error();
      } else if (auto s = c->send(); !s) {
        why = s.error();
      }
    }
    if (why.find("cannot send") == std::string::npos) return 11;
    if (c->connected()) return 12;
    sigset_t pending, after;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) return 13;
    pthread_sigmask(SIG_SETMASK, nullptr, &after);
    if (sigismember(&after, SIGPIPE) != sigismember(&before, SIGPIPE)) return 14;
    return 0;
  });
  // 11: no send failed; 12: still connected; 13: a SIGPIPE left pending; 14: the mask changed;
  // 128 + 13: killed by SIGPIPE.
  EXPECT_EQ(test::wait_child(child), 0);
}

TEST(RedisClientTest, TheEndpointNamesTheHostPortOrSocketAndTheDatabase) {
  RedisConfig c;
  c.host = "10.0.0.7";
  c.port = 6380;
  EXPECT_EQ(redis_endpoint(c), "10.0.0.7:6380");
  c.db = 2;
  EXPECT_EQ(redis_endpoint(c), "10.0.0.7:6380 db 2");
  c.unix_socket = "/run/redis.sock";
  EXPECT_EQ(redis_endpoint(c), "unix:/run/redis.sock db 2");
}

}  // namespace
}  // namespace poscache::detail
