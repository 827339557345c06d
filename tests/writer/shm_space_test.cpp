// A /dev/shm too small for the segment is an error at creation, never a SIGBUS later. The test
// mounts a 4 MiB tmpfs over /dev/shm in a private mount namespace (needs root, as in CI).
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "poscache/writer.hpp"
#include "test_util.hpp"

using namespace poscache;

TEST(ShmSpaceTest, ASegmentLargerThanDevShmFailsAtCreationNamingTheSize) {
  if (::geteuid() != 0) POSCACHE_SKIP_OR_FAIL("needs root for a private mount namespace");
  const std::string msg = test::in_child([] {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=4m") != 0) {
      return std::string("SKIP");
    }
    std::string m;
    try {
      auto w = Writer::open(test::small_config("poscache_test_nospace", 100'000));  // ~50 MiB
      m = "created";
    } catch (const Error& e) {
      m = e.what();
    }
    // Nothing half-made is left behind.
    if (::access("/dev/shm/poscache_test_nospace", F_OK) == 0) m += " [segment left behind]";
    if (::access("/dev/shm/poscache_test_nospace.lock", F_OK) == 0) m += " [lock file left behind]";
    return m;
  });
  if (msg == "SKIP") POSCACHE_SKIP_OR_FAIL("cannot mount a private tmpfs here");
  EXPECT_NE(msg.find("cannot allocate"), std::string::npos) << msg;
  EXPECT_NE(msg.find("in /dev/shm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("capacity 100000"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("left behind"), std::string::npos) << msg;
}
