// One writer per segment: a second one fails at once, naming the first, in this process or another;
// a writer that fails to start leaves no lock file of its own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

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

// A writer that fails to start removes the lock file it created, and only that: one it found
// stays. Here the segment's name holds a file that is not a segment (any start-up failure after
// the lock takes this path: /dev/shm too small is ShmSpaceTest's).
TEST(WriterLockTest, AWriterThatFailsToStartLeavesNoLockFileItCreated) {
  test::ScratchSegment seg("lock4");
  const std::string shm = "/dev/shm/" + seg.name(), lock = shm + ".lock";
  const int fd = ::open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "not a segment", 13), 13);
  ::close(fd);
  try {
    Writer::open(test::small_config(seg.name()));
    FAIL() << "a writer started over a file that is not a segment";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a poscache segment"), std::string::npos)
        << e.what();
  }
  EXPECT_NE(::access(lock.c_str(), F_OK), 0) << lock << " left behind";
  EXPECT_EQ(::access(shm.c_str(), F_OK), 0) << "the file found there is not the writer's";
  // A lock file that was there before (a writer that ran and stopped) is left as found.
  ::close(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  EXPECT_THROW(Writer::open(test::small_config(seg.name())), Error);
  EXPECT_EQ(::access(lock.c_str(), F_OK), 0) << "a lock file it did not create was removed";
  // And the name is free for the next writer once the file is gone.
  ::unlink(shm.c_str());
  EXPECT_NO_THROW(Writer::open(test::small_config(seg.name())));
}
