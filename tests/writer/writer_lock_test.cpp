// One writer per segment: a second one fails at once, naming the first, in this process or another.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "poscache/writer.hpp"
#include "test_util.hpp"

using namespace poscache;

TEST(WriterLockTest, ASecondWriterInTheSameProcessIsRefused) {
  test::ScratchSegment seg("lock1");
  auto first = Writer::open(test::small_config(seg.name()));
  try {
    Writer::open(test::small_config(seg.name()));
    FAIL() << "second writer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already has a writer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos) << e.what();
  }
}

TEST(WriterLockTest, ASecondWriterInAnotherProcessIsRefusedNamingTheFirst) {
  test::ScratchSegment seg("lock2");
  auto first = Writer::open(test::small_config(seg.name()));
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    std::string msg = "accepted";
    try {
      Writer::open(test::small_config(seg.name()));
    } catch (const Error& e) {
      msg = e.what();
    }
    [[maybe_unused]] auto n = ::write(pipefd[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char buf[512] = {};
  [[maybe_unused]] auto n = ::read(pipefd[0], buf, sizeof buf - 1);
  ::waitpid(child, nullptr, 0);
  const std::string msg(buf);
  EXPECT_NE(msg.find("already has a writer: pid " + std::to_string(::getpid())), std::string::npos) << msg;
}

TEST(WriterLockTest, TheLockDiesWithItsProcess) {
  test::ScratchSegment seg("lock3");
  const pid_t child = ::fork();
  if (child == 0) {
    auto w = Writer::open(test::small_config(seg.name()));
    ::raise(SIGKILL);  // no clean close
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_NO_THROW(Writer::open(test::small_config(seg.name())));
}
