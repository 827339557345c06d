// Safe defaults (docs/operations.md, "Permissions"): a process in the segment's group reads it
// and cannot produce. Every command and every producer ring goes through the ingest socket,
// which is 0600 unless a producers' group is named ([ingest] socket_group: then 0660 for it).
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/daemon_util.hpp"
#include "poscache/format.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using poscache::test::Daemon;
using poscache::test::seg_flag;
using poscache::test::TempDir;

namespace permissions {  // named: the test files share one unity translation unit

// In a child: becomes user nobody with `groups` as its only groups (the first its primary: not
// nogroup, which the second test makes the producers' group), then reads the position
// the parent wrote and tries to produce. Its exit code says what it could do.
enum Could {
  read_and_refused = 0,
  no_drop = 10,
  no_read = 11,
  connected = 12,
  produced = 13,
  refused_and_produced_nothing = 14
};
int as_nobody(const std::string& segment, const std::vector<gid_t>& groups) {
  return test::wait_child(test::fork_child([&]() -> int {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(groups.front()) != 0 ||
        ::setuid(65534) != 0)
      return no_drop;
    try {
      Reader r = Reader::open(segment);
      Position p;
      if (r.get(*r.namespace_id("spot"), "w1", "SOL", p) != ReadStatus::ok) return no_read;
    } catch (const std::exception&) {
      return no_read;
    }
    const std::string path = "/dev/shm/" + segment + ".sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    const bool refused =
        ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == EACCES;
    ::close(fd);
    ProducerConfig pc;
    pc.segment = segment;
    pc.name = "intruder";
    try {
      auto p = Producer::open(pc);
      const PushResult r = p->fill("spot", "w1", "SOL", Side::sell, "1", "100", "0", "", 5s);
      if (r.status == PushStatus::ok && p->wait_applied(r.seq, 5s) == WaitStatus::done)
        return refused ? refused_and_produced_nothing : produced;
    } catch (const std::exception& e) {
      if (!refused) return connected;
      return std::string(e.what()).find("Permission denied") != std::string::npos
                 ? read_and_refused
                 : refused_and_produced_nothing;
    }
    return refused ? refused_and_produced_nothing : connected;
  }));
}

// The writer's own user (root here) sends the first fill, as its producer would.
bool first_fill(const Daemon& d, const test::ScratchSegment& seg) {
  return d.wait_for("ingest socket") && test::run_cli(std::string(POSCACHE_FEED_BIN) + " -s " +
                                                      seg.name() + " fill spot w1 SOL buy 10 100")
                                                .code == 0;
}

TEST(PermissionsTest, AReaderGroupProcessReadsAndIsRefusedOnTheSocketAndTheRings) {
  if (::geteuid() != 0) POSCACHE_SKIP_OR_FAIL("acting as another user needs root");
  const test::ScratchSegment seg("perm_reader");
  Daemon d(seg_flag(seg) + " --no-redis --capacity 1000");
  ASSERT_TRUE(first_fill(d, seg)) << d.log();
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name() + ".sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // nobody in the segment's group: a reader.
  struct stat seg_st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &seg_st), 0);
  EXPECT_EQ(as_nobody(seg.name(), {seg_st.st_gid}), read_and_refused)
      << "10: could not drop privileges, 11: could not read, 12: connected, 13: produced";
  Reader r = Reader::open(seg.name());
  Position p;
  ASSERT_EQ(r.get(*r.namespace_id("spot"), "w1", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(format_field(r.namespace_info(p.ns), p, 0), "10.000000000000000000");
}

// A producers' group named: its members produce, the readers still cannot.
TEST(PermissionsTest, AProducersGroupMayProduceAndReadersStillMayNot) {
  if (::geteuid() != 0) POSCACHE_SKIP_OR_FAIL("acting as another user needs root");
  const group* producers = ::getgrnam("nogroup");  // a group every Debian has, as the producers'
  ASSERT_NE(producers, nullptr);
  const test::ScratchSegment seg("perm_group");
  TempDir dir;
  Daemon d(seg_flag(seg) + " --no-redis --capacity 1000 --config " +
           dir.file("w.toml", "[ingest]\nsocket_group = \"nogroup\"\n"));
  ASSERT_TRUE(first_fill(d, seg)) << d.log();
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name() + ".sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, producers->gr_gid);
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(as_nobody(seg.name(), {st.st_gid}), read_and_refused);
  EXPECT_EQ(as_nobody(seg.name(), {st.st_gid, producers->gr_gid}), produced);
}

}  // namespace permissions
