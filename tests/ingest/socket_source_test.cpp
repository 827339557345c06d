// The JSON-lines socket (writer/ingest/socket_source.hpp), in process: the test thread is the
// daemon's apply loop (it polls the source), clients run in threads or child processes.
#include "writer/ingest/socket_source.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "test_util.hpp"
#include "tools/feed_client.hpp"

namespace poscache::ingest {
namespace {

using namespace std::chrono_literals;

struct Served {
  explicit Served(const std::string& tag, mode_t mode = 0660)
      : seg(tag),
        writer(Writer::open(test::small_config(seg.name(), 4096))),
        exec(*writer, nullptr),
        source(SocketConfig{default_socket_path(seg.name()), mode, "", 256}, writer->namespaces(),
               log.sink()) {}
  ~Served() { ::unlink(source.path().c_str()); }
  // Runs `client` in a thread while this thread serves the socket, until the client returns.
  void with_client(const std::function<void()>& client) {
    std::atomic<bool> done{false};
    std::thread t([&] {
      client();
      done = true;
    });
    while (!done) {
      if (source.poll(exec, 0, 256) == 0) std::this_thread::sleep_for(20us);
    }
    t.join();
    for (int i = 0; i < 10; ++i) source.poll(exec, 0, 256);  // hang-ups
  }
  test::ScratchSegment seg;
  test::LogLines log;
  std::unique_ptr<Writer> writer;
  CommandExecutor exec;
  SocketSource source;
};

TEST(SocketSourceTest, RepliesComeInOrderWithTheirIds) {
  Served s("sock_order");
  std::vector<std::string> replies;
  s.with_client([&] {
    feed::SocketClient c(s.source.path());
    replies.push_back(c.call(
        R"({"id":1,"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy","qty":"2","price":"10"})"));
    replies.push_back(
        c.call(R"({"id":"b","op":"erase","ns":"spot","account":"w9","instrument":"SOL"})"));
    replies.push_back(c.call(R"({"id":3,"op":"fill","ns":"spot","account":"w1"})"));
    replies.push_back(c.call(R"({"op":"invalidate","account":"w1"})"));
  });
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0].rfind(R"({"id":1,"status":"applied","version":)", 0), 0u) << replies[0];
  EXPECT_EQ(replies[1], R"({"id":"b","status":"not_found"})");
  EXPECT_EQ(replies[2].rfind(
                R"({"id":3,"status":"rejected","error":"fill: missing member \"instrument\"")", 0),
            0u)
      << replies[2];
  EXPECT_EQ(replies[3], R"({"status":"applied","count":1})");
  const auto c = s.source.counters();
  EXPECT_EQ(c.received, 4u);
  EXPECT_EQ(c.applied, 2u);
  EXPECT_EQ(c.ignored, 1u);
  EXPECT_EQ(c.rejected, 1u);
}

TEST(SocketSourceTest, APipelinedStreamIsAppliedWholeAndInOrder) {
  Served s("sock_pipe");
  constexpr int kLines = 20'000;
  int sent = 0, applied = 0;
  s.with_client([&] {
    feed::SocketClient c(s.source.path());
    c.pipeline(
        [&](std::string& out) {
          if (sent == kLines) return false;
          // One position, qty = the line number: the last value wins only if order held.
          out =
              R"({"op":"upsert","ns":"spot","account":"w1","instrument":"SOL","fields":{"qty":")" +
              std::to_string(++sent) + "\"}}";
          return true;
        },
        [&](std::string_view r) { applied += r.find("applied") != std::string_view::npos; });
  });
  EXPECT_EQ(applied, kLines);
  EXPECT_EQ(format_decimal(s.writer->find(0, "w1", "SOL")->values[0], 18),
            std::to_string(kLines) + ".000000000000000000");
}

TEST(SocketSourceTest, BadLinesAreAnsweredAndTheNextLineStillWorks) {
  Served s("sock_bad");
  std::vector<std::string> replies;
  s.with_client([&] {
    feed::SocketClient c(s.source.path());
    replies.push_back(c.call("{not json"));
    replies.push_back(c.call(std::string(kMaxJsonLine + 100, 'x')));  // over-long, in one read
    replies.push_back(c.call(std::string(1 << 20, 'y')));  // over-long, across many reads
    replies.push_back(c.call(
        R"({"op":"upsert","ns":"spot","account":"w1","instrument":"SOL","fields":{"qty":1.25}})"));
    replies.push_back(c.call(
        R"({"op":"upsert","ns":"spot","account":"w1","instrument":"SOL","fields":{"qty":"1.25"}})"));
  });
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_NE(replies[0].find("not valid JSON"), std::string::npos) << replies[0];
  EXPECT_NE(replies[1].find("line of 65636 bytes; the limit is 65536"), std::string::npos)
      << replies[1];
  EXPECT_NE(replies[2].find("line longer than 65536 bytes"), std::string::npos) << replies[2];
  EXPECT_NE(replies[3].find("floating-point"), std::string::npos) << replies[3];
  EXPECT_NE(replies[4].find("applied"), std::string::npos) << replies[4];
  EXPECT_EQ(s.writer->stats().rejects, 4u);  // counted in the segment, where operators look
}

TEST(SocketSourceTest, AdminOperationsAreLoggedWithThePeersUidAndPid) {
  Served s("sock_admin");
  s.with_client([&] {
    feed::SocketClient c(s.source.path());
    c.call(R"({"op":"invalidate","glob":"spot:*:SOL"})");
  });
  const std::string uid = "uid " + std::to_string(::getuid());
  const std::string pid = "pid " + std::to_string(::getpid());  // the client thread's process
  bool found = false;
  for (const auto& l : s.log.lines())
    found |= l.find("invalidate") != std::string::npos && l.find(uid) != std::string::npos &&
             l.find(pid) != std::string::npos;
  EXPECT_TRUE(found) << "no admin log line with " << uid << " and " << pid;
}

TEST(SocketSourceTest, AClientThatDoesNotReadDoesNotStallTheOthers) {
  Served s("sock_slow");
  bool other_ok = false;
  s.with_client([&] {
    // A raw connection that writes 200k commands and never reads a reply.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, s.source.path().c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string line =
        R"({"op":"upsert","ns":"spot","account":"w2","instrument":"SOL","fields":{"qty":"1"}})"
        "\n";
    for (int i = 0; i < 200'000; ++i) {
      if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0) break;  // EAGAIN: it is full
    }
    feed::SocketClient other(s.source.path());
    other_ok =
        other.call(R"({"op":"invalidate","ns":"marks"})").find("applied") != std::string::npos;
    ::close(fd);
  });
  EXPECT_TRUE(other_ok);
  EXPECT_EQ(s.source.clients(), 0u);  // both hung up, both released
}

TEST(SocketSourceTest, TheSocketFileHasTheModeAskedAndRefusesOthers) {
  Served s("sock_mode", 0600);
  struct stat st {};
  ASSERT_EQ(::stat(s.source.path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  if (::geteuid() != 0) POSCACHE_SKIP_OR_FAIL("checking another user's access needs root");
  // A child that becomes "nobody" may not connect to a 0600 socket owned by root.
  const std::string path = s.source.path();
  const int code = test::wait_child(test::fork_child([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
    try {
      feed::SocketClient c(path);
      return 11;  // connected: the mode did not hold
    } catch (const std::exception& e) {
      return std::string(e.what()).find("Permission denied") != std::string::npos ? 0 : 12;
    }
  }));
  EXPECT_EQ(code, 0) << "10: could not drop privileges, 11: connected, 12: another error";
}

TEST(SocketSourceTest, AStaleSocketIsReplacedAndAnythingElseAtThePathIsRefused) {
  test::ScratchSegment seg("sock_stale");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  const std::string path = default_socket_path(seg.name());
  { SocketSource first(SocketConfig{path, 0660, "", 8}, w->namespaces(), nullptr); }
  // A killed daemon leaves its socket file: simulate it with a bound, never-unlinked socket.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(fd);
  EXPECT_NO_THROW(SocketSource(SocketConfig{path, 0660, "", 8}, w->namespaces(), nullptr));
  std::ofstream(path) << "not a socket\n";
  try {
    SocketSource(SocketConfig{path, 0660, "", 8}, w->namespaces(), nullptr);
    ADD_FAILURE() << "a regular file was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a socket"), std::string::npos) << e.what();
  }
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace poscache::ingest
