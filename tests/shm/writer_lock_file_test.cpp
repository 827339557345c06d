// The writer's lock file as a reader asks it (shm/writer_lock_file.hpp): free, held by a named
// process, or held by this process's own writer, which a reader must never open it for.
#include "shm/writer_lock_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/process.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::shm;

namespace {

// Takes an exclusive fcntl() lock on `path` as the writer does; the descriptor, or -1.
int lock_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

}  // namespace

TEST(WriterLockFileTest, NoFileOrAnUnheldOneIsFreeAndAHolderIsNamed) {
  test::ScratchSegment seg("lockq");
  const std::string path = writer_lock_path(seg.name());
  EXPECT_EQ(path, "/dev/shm/" + seg.name() + ".lock");
  EXPECT_EQ(query_writer_lock(path.c_str()).state, LockState::free);  // no file
  ::close(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  EXPECT_EQ(query_writer_lock(path.c_str()).state, LockState::free);  // nobody holds it

  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t holder = test::fork_child([&] {
    const int fd = lock_file(path);
    char b = fd >= 0 ? 'l' : 'x';
    if (::write(ready[1], &b, 1) != 1) return 1;
    return ::read(done[0], &b, 1) == 1 ? 0 : 2;  // holds it until told
  });
  char b = 0;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ASSERT_EQ(b, 'l');
  const LockQuery q = query_writer_lock(path.c_str());
  EXPECT_EQ(q.state, LockState::held);
  EXPECT_EQ(q.holder, holder);
  ASSERT_EQ(::write(done[1], "d", 1), 1);
  EXPECT_EQ(test::wait_child(holder), 0);
  EXPECT_EQ(query_writer_lock(path.c_str()).state, LockState::free);  // died with its holder
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}

// A lock this process holds is reported held (F_OFD_GETLK sees the asker's own locks, F_GETLK
// would not); asking here is safe only because this test's lock is not a writer's to lose.
TEST(WriterLockFileTest, ALockOfThisProcessIsSeenAsHeld) {
  test::ScratchSegment seg("lockself");
  const std::string path = writer_lock_path(seg.name());
  const int fd = lock_file(path);
  ASSERT_GE(fd, 0);
  const LockQuery q = query_writer_lock(path.c_str());
  EXPECT_EQ(q.state, LockState::held);
  EXPECT_EQ(q.holder, ::getpid());
  ::close(fd);
}

TEST(WriterLockFileTest, TheRegistryNamesTheSegmentsThisProcessWritesAndNotItsChildren) {
  EXPECT_FALSE(this_process_writes("poscache_test_registry"));
  EXPECT_TRUE(note_writer("poscache_test_registry"));
  EXPECT_FALSE(note_writer("poscache_test_registry"));  // a second writer of it
  EXPECT_TRUE(this_process_writes("poscache_test_registry"));
  const pid_t child = test::fork_child([] {  // a forked child inherits no fcntl lock
    return this_process_writes("poscache_test_registry") ? 1 : 0;
  });
  EXPECT_EQ(test::wait_child(child), 0);
  forget_writer("poscache_test_registry");
  EXPECT_FALSE(this_process_writes("poscache_test_registry"));
}

TEST(WriterLockFileTest, AWriterProcessIsGoneWhenItsPidIsFreeOrReused) {
  const pid_t me = ::getpid();
  const std::uint64_t ticks = process_start_ticks(me);
  ASSERT_NE(ticks, 0u);
  EXPECT_FALSE(writer_process_gone(me, ticks));
  EXPECT_FALSE(writer_process_gone(me, 0));         // no start time recorded: the pid decides
  EXPECT_TRUE(writer_process_gone(me, ticks + 1));  // another process under the same pid
  EXPECT_TRUE(writer_process_gone(0, 0));           // no writer recorded
  const pid_t gone = test::fork_child([] { return 0; });
  test::wait_child(gone);
  EXPECT_TRUE(writer_process_gone(gone, 0));
}
