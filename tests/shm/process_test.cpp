// shm/process: telling a process apart from a later one with the same pid, and never failing
// (throwing) when the process exits while its /proc entry is being read.
#include "shm/process.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

using poscache::shm::process_start_ticks;

TEST(ProcessTest, ThisProcessHasStableStartTicksAndAReapedOneHasNone) {
  const auto self = process_start_ticks(::getpid());
  EXPECT_NE(self, 0u);
  EXPECT_EQ(process_start_ticks(::getpid()), self);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(process_start_ticks(child), 0u);
}

// A writer died of this on SIGTERM (CI, stop 22): libstdc++'s filebuf throws from underflow when
// the read of /proc/<pid>/stat fails with ESRCH, because the process was reaped between the open
// and the read. Here a thread reads the stat of children that are exiting and being reaped, as
// fast as it can; any throw ends the test.
TEST(ProcessTest, AProcessReapedWhileItsStatIsReadGivesZeroNotAnException) {
  std::atomic<pid_t> current{0};
  std::atomic<bool> done{false};
  std::atomic<long> reads{0};
  std::thread reader([&] {
    while (!done.load(std::memory_order_relaxed)) {
      const pid_t pid = current.load(std::memory_order_relaxed);
      if (pid != 0) {
        (void)process_start_ticks(pid);  // 0 or the child's ticks: either is right
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  for (int i = 0; i < 1500; ++i) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) ::_exit(0);
    current.store(child, std::memory_order_relaxed);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
}
