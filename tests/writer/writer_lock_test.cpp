// One writer per segment: a second one fails at once, naming the first, in this process or another.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

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
    EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())), std::string::npos)
        << e.what();
  }
}

TEST(WriterLockTest, ASecondWriterInAnotherProcessIsRefusedNamingTheFirst) {
  test::ScratchSegment seg("lock2");
  auto first = Writer::open(test::small_config(seg.name()));
  const std::string msg = test::in_child([&] {
    try {
      Writer::open(test::small_config(seg.name()));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  });
  EXPECT_NE(msg.find("already has a writer: pid " + std::to_string(::getpid())), std::string::npos)
      << msg;
}

TEST(WriterLockTest, TheLockDiesWithItsProcess) {
  test::ScratchSegment seg("lock3");
  const pid_t child = test::fork_child([&] {
    auto w = Writer::open(test::small_config(seg.name()));
    ::raise(SIGKILL);  // no clean close
    return 0;
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL);
  EXPECT_NO_THROW(Writer::open(test::small_config(seg.name())));
}
