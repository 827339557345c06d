// get() makes no system call and allocates nothing. The first is proven with a seccomp filter
// that kills the process on any system call but exit (strict mode cannot be used: it also
// disables rdtsc, which the vDSO clock relies on); the second with a counting operator new.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/refresh.hpp"
#include "test_util.hpp"
#include "writer/refresh/board.hpp"

namespace {
std::atomic<std::uint64_t> g_allocations{0};

// After this, the only system call the process may make is exit(2); anything else kills it.
void allow_only_exit() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) ::_exit(3);
}
}  // namespace

// AddressSanitizer brings its own operator new; the allocation count is checked in the plain
// build only (the system-call check runs in both).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCountAllocations = false;
#else
constexpr bool kCountAllocations = true;
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n)) return p;
  throw std::bad_alloc();
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop
#endif

using namespace poscache;

TEST(ReaderSyscallTest, GetMakesNoSystemCallAndDoesNotAllocate) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer's runtime makes system calls of its own inside every intercepted call: under
  // the seccomp filter it hangs. The release and ASan passes run this test.
  GTEST_SKIP() << "not meaningful under ThreadSanitizer";
#endif
  test::ScratchSegment seg("sys");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  for (int i = 0; i < 20; ++i)
    w->upsert(*w->make_update("spot", "a" + std::to_string(i), "SOL", {{"qty", "1"}}));
  w->tick();
  Reader r = Reader::open(seg.name());
  const NamespaceId spot = *r.namespace_id("spot");
  const pid_t child = ::fork();
  if (child == 0) {
    Position p;
    const std::uint64_t before = g_allocations.load();
    allow_only_exit();  // from here, any system call but exit kills the process
    int bad = 0;
    for (int round = 0; round < 10000; ++round) {
      bad +=
          r.get(spot, "a" + std::string(1, '1'), "SOL", p) != ReadStatus::ok;  // SSO: no allocation
      bad += r.get(spot, "zz", "SOL", p) != ReadStatus::not_found;
      bad += r.get("spot", "a7", "SOL", p) != ReadStatus::ok;
    }
    const bool allocated = kCountAllocations && g_allocations.load() != before;
    ::syscall(SYS_exit, bad == 0 && !allocated ? 0 : 1);  // exit(2), not exit_group(2)
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_FALSE(WIFSIGNALED(status))
      << "get() made a system call (killed by signal " << WTERMSIG(status) << ")";
  ASSERT_NE(WEXITSTATUS(status), 3) << "could not install the seccomp filter";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong results or an allocation on the read path";
}

// With read-through on (policies: refresh on stale and on miss, a refresher registered), get()
// asks for the keys it misses by writing into its own request ring: still no system call and no
// allocation, also once the ring is full (counted). The requests are then seen by the writer.
TEST(ReaderSyscallTest, GetAsksForRefreshesWithNoSystemCallAndNoAllocation) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not meaningful under ThreadSanitizer";
#endif
  test::ScratchSegment seg("sysrf");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  w->upsert(*w->make_update("spot", "a1", "SOL", {{"qty", "1"}}));
  w->tick();
  refresh::RequestBoard board(seg.name(), w->stats().generation, 0640,
                              static_cast<std::uint32_t>(w->namespaces().size()));
  const NamespaceId spot = *w->namespace_id("spot");
  shm::RefreshPolicyWords& pol = board.header().policy[spot];
  pol.on = shm::kOnStale | shm::kOnMiss;
  pol.refreshers = 1;
  pol.timeout_ns = 1'000'000'000;
  pol.negative_ttl_ns = 1'000'000'000;
  Reader r = Reader::open(seg.name());
  ASSERT_TRUE(r.refresh_available()) << r.refresh_unavailable_because();
  const pid_t child = ::fork();
  if (child == 0) {
    Position p;
    const std::uint64_t before = g_allocations.load();
    allow_only_exit();
    int bad = 0;
    char account[8] = {'m', 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 1000; ++i) {  // 1000 distinct misses: 32 fill the ring, the rest `full`
      account[1] = static_cast<char>('a' + i % 26);
      account[2] = static_cast<char>('a' + (i / 26) % 26);
      account[3] = static_cast<char>('a' + i / 676);
      bad += r.get(spot, std::string_view(account, 4), "SOL", p) != ReadStatus::not_found;
      bad += r.get(spot, "a1", "SOL", p) != ReadStatus::ok;
    }
    const bool allocated = kCountAllocations && g_allocations.load() != before;
    ::syscall(SYS_exit, bad == 0 && !allocated ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_FALSE(WIFSIGNALED(status))
      << "get() made a system call (killed by signal " << WTERMSIG(status) << ")";
  ASSERT_NE(WEXITSTATUS(status), 3) << "could not install the seccomp filter";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong results or an allocation on the read path";
  std::vector<refresh::PoppedRequest> asked;
  std::uint64_t malformed = 0;
  board.pop(asked, 1000, true, malformed);
  ASSERT_EQ(asked.size(), shm::kRequestCells);  // the ring's worth, in order
  EXPECT_EQ(malformed, 0u);
  EXPECT_EQ(asked[0].account, "maaa");
  EXPECT_EQ(asked[1].account, "mbaa");
  EXPECT_EQ(asked[0].reason, RefreshReason::miss);
  EXPECT_EQ(board.full_counts(), 1000u - shm::kRequestCells);
}
