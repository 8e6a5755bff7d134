// Unit tests for shared-memory segments (memfd, hugetlbfs) and SCM_RIGHTS descriptor passing,
// including the hand-over to a real child process and the rejection of malformed messages.
#include "platform/shm/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "platform/assert/assert.h"

namespace herald::shm {
namespace {

struct SocketPair {
  explicit SocketPair(int type) {
    int sv[2];
    HERALD_CHECK(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

size_t open_fd_count() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (d != nullptr && ::readdir(d) != nullptr) ++n;
  if (d != nullptr) ::closedir(d);
  return n;
}

long free_huge_pages() {
  std::ifstream f("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
  long n = -1;
  if (!(f >> n)) return -1;
  return n;
}

// The permissions of the mapping that contains `p`, as /proc/self/maps prints them ("rw-s").
std::string mapping_perms(const void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) == 3 && addr >= lo && addr < hi) {
      return perms;
    }
  }
  return "";
}

TEST(SegmentTest, CreateRoundsUpToPagesAndIsZeroFilled) {
  auto seg = Segment::create("seg_test", 5000);
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_EQ(seg->size(), 8192u);
  EXPECT_EQ(seg->backing(), Backing::kMemfd);
  EXPECT_FALSE(seg->read_only());
  for (size_t i = 0; i < seg->size(); ++i) ASSERT_EQ(seg->data()[i], std::byte{0}) << i;
  EXPECT_EQ(mapping_perms(seg->data()), "rw-s");
  // Close-on-exec, so a helper the control plane spawns does not inherit the segment.
  EXPECT_TRUE(::fcntl(seg->fd(), F_GETFD) & FD_CLOEXEC);
}

TEST(SegmentTest, CreateRejectsBadArguments) {
  EXPECT_EQ(Segment::create("x", 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Segment::create("", 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Segment::create(std::string(250, 'n'), 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SegmentTest, SizeIsSealed) {
  auto seg = Segment::create("seg_sealed", 4096);
  ASSERT_TRUE(seg.ok());
  EXPECT_NE(::ftruncate(seg->fd(), 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(seg->fd(), 1 << 20), 0);
  const int seals = ::fcntl(seg->fd(), F_GET_SEALS);
  EXPECT_TRUE(seals & F_SEAL_SHRINK);
  EXPECT_TRUE(seals & F_SEAL_GROW);
}

TEST(SegmentTest, AttachSharesTheBytes) {
  auto seg = Segment::create("seg_share", 4096);
  ASSERT_TRUE(seg.ok());
  auto peer = Segment::attach(::fcntl(seg->fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->size(), 4096u);
  EXPECT_EQ(peer->backing(), Backing::kMemfd);
  EXPECT_NE(peer->data(), seg->data());
  std::memcpy(seg->data() + 100, "herald", 6);
  EXPECT_EQ(std::memcmp(peer->data() + 100, "herald", 6), 0);
}

TEST(SegmentTest, ReadOnlyAttachMapsWithoutWritePermission) {
  auto seg = Segment::create("seg_ro", 4096);
  ASSERT_TRUE(seg.ok());
  auto ro = Segment::attach(::fcntl(seg->fd(), F_DUPFD_CLOEXEC, 0), /*read_only=*/true);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_TRUE(ro->read_only());
  EXPECT_EQ(mapping_perms(ro->data()), "r--s");
  seg->data()[7] = std::byte{42};
  EXPECT_EQ(ro->data()[7], std::byte{42});
}

TEST(SegmentTest, AttachRefusesWhatIsNotASealedMemfd) {
  // A memfd whose size is not sealed: its sender could truncate it under our mapping.
  UniqueFd unsealed(::memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_TRUE(unsealed);
  ASSERT_EQ(::ftruncate(unsealed.get(), 4096), 0);
  auto a = Segment::attach(std::move(unsealed));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(a.status().message().find("F_SEAL_SHRINK"), std::string_view::npos);
  // An eventfd is not a file with pages at all.
  EXPECT_FALSE(Segment::attach(::eventfd(0, EFD_CLOEXEC)).ok());
  // A sealed but empty memfd.
  UniqueFd empty(::memfd_create("empty", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::fcntl(empty.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
  EXPECT_EQ(Segment::attach(std::move(empty)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Segment::attach(-1).ok());
}

TEST(SegmentTest, MoveTransfersTheMapping) {
  auto seg = Segment::create("seg_move", 4096);
  ASSERT_TRUE(seg.ok());
  std::byte* p = seg->data();
  Segment moved(std::move(*seg));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(seg->data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from
  EXPECT_EQ(seg->fd(), -1);
  auto other = Segment::create("seg_move2", 4096);
  ASSERT_TRUE(other.ok());
  moved = std::move(*other);
  EXPECT_NE(moved.data(), p);
}

TEST(SegmentTest, HugetlbfsSegment) {
  if (free_huge_pages() < 1) {
    GTEST_SKIP() << "no free 2 MiB huge pages (vm.nr_hugepages=0 or all in use): hugetlbfs "
                    "backing not tested";
  }
  auto seg = Segment::create("seg_huge", 1, Backing::kHugetlbfs);
  ASSERT_TRUE(seg.ok()) << seg.status();
  EXPECT_EQ(seg->size(), kHugePageBytes);
  EXPECT_EQ(seg->backing(), Backing::kHugetlbfs);
  EXPECT_EQ(seg->data()[kHugePageBytes - 1], std::byte{0});
  seg->data()[12345] = std::byte{7};
  auto peer = Segment::attach(::fcntl(seg->fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->backing(), Backing::kHugetlbfs);
  EXPECT_EQ(peer->size(), kHugePageBytes);
  EXPECT_EQ(peer->data()[12345], std::byte{7});
}

TEST(SegmentTest, HugetlbfsFailsClearlyWhenPagesRunOut) {
  const long free_pages = free_huge_pages();
  if (free_pages < 0) GTEST_SKIP() << "kernel without 2 MiB hugetlb pages";
  // One page more than the pool has free: the reservation at mmap time must fail (no SIGBUS
  // later).
  auto seg = Segment::create("seg_huge_oom", static_cast<size_t>(free_pages + 1) * kHugePageBytes,
                             Backing::kHugetlbfs);
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(seg.status().message().find("huge pages"), std::string_view::npos) << seg.status();
}

// --- SCM_RIGHTS -------------------------------------------------------------------------------

class FdPassingTest : public ::testing::TestWithParam<int> {};

TEST_P(FdPassingTest, SegmentAndPayloadReachAChildProcess) {
  SocketPair sp(GetParam());
  auto seg = Segment::create("seg_pass", 4096);
  ASSERT_TRUE(seg.ok());
  UniqueFd bell(::eventfd(0, EFD_CLOEXEC));
  const char kHello[] = "layout-v1";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: receive, attach, check the payload, write a reply into the segment, ring.
    sp.a.reset();
    auto got = recv_fds(sp.b.get());
    if (!got.ok() || got->fds.size() != 2) ::_exit(2);
    if (got->payload.size() != sizeof(kHello) ||
        std::memcmp(got->payload.data(), kHello, sizeof(kHello)) != 0) {
      ::_exit(3);
    }
    if (!(::fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC)) ::_exit(4);
    auto peer = Segment::attach(std::move(got->fds[0]));
    if (!peer.ok()) ::_exit(5);
    std::memcpy(peer->data() + 64, "from child", 10);
    const uint64_t one = 1;
    if (::write(got->fds[1].get(), &one, 8) != 8) ::_exit(6);
    ::_exit(0);
  }
  sp.b.reset();
  const int fds[] = {seg->fd(), bell.get()};
  ASSERT_TRUE(send_fds(sp.a.get(), fds, std::as_bytes(std::span(kHello))).ok());
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(std::memcmp(seg->data() + 64, "from child", 10), 0);
  uint64_t count = 0;
  EXPECT_EQ(::read(bell.get(), &count, 8), 8);
  EXPECT_EQ(count, 1u);
  if (GetParam() != SOCK_DGRAM) {
    EXPECT_TRUE(peer_hung_up(sp.a.get()));  // the child exited
  }
}

INSTANTIATE_TEST_SUITE_P(SocketTypes, FdPassingTest,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM),
                         [](const auto& param_info) {
                           return param_info.param == SOCK_STREAM      ? std::string("stream")
                                  : param_info.param == SOCK_SEQPACKET ? std::string("seqpacket")
                                                                       : std::string("dgram");
                         });

TEST(FdPassingTest, BackToBackMessagesOnAStreamStayApart) {
  SocketPair sp(SOCK_STREAM);
  UniqueFd e1(::eventfd(0, EFD_CLOEXEC)), e2(::eventfd(0, EFD_CLOEXEC));
  const int one[] = {e1.get()};
  const int two[] = {e1.get(), e2.get()};
  const std::byte p1[] = {std::byte{1}, std::byte{2}};
  ASSERT_TRUE(send_fds(sp.a.get(), one, p1).ok());
  ASSERT_TRUE(send_fds(sp.a.get(), two, {}).ok());
  auto m1 = recv_fds(sp.b.get());
  ASSERT_TRUE(m1.ok()) << m1.status();
  EXPECT_EQ(m1->fds.size(), 1u);
  EXPECT_EQ(m1->payload.size(), 2u);
  auto m2 = recv_fds(sp.b.get());
  ASSERT_TRUE(m2.ok()) << m2.status();
  EXPECT_EQ(m2->fds.size(), 2u);
  EXPECT_TRUE(m2->payload.empty());
}

TEST(FdPassingTest, TooManyDescriptorsAreRejectedAndNoneLeak) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    SocketPair sp(type);
    UniqueFd e(::eventfd(0, EFD_CLOEXEC));
    const int fds[] = {e.get(), e.get(), e.get(), e.get()};
    ASSERT_TRUE(send_fds(sp.a.get(), fds, {}).ok());
    const size_t before = open_fd_count();
    auto got = recv_fds(sp.b.get(), /*max_fds=*/2);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
    EXPECT_EQ(open_fd_count(), before) << "descriptors leaked from a rejected message";
  }
}

TEST(FdPassingTest, ForeignOrTruncatedMessagesAreRejected) {
  {  // Plain bytes without descriptors or our header.
    SocketPair sp(SOCK_SEQPACKET);
    const char junk[32] = "GET / HTTP/1.1";
    ASSERT_EQ(::send(sp.a.get(), junk, sizeof(junk), 0), static_cast<ssize_t>(sizeof(junk)));
    EXPECT_EQ(recv_fds(sp.b.get()).status().code(), absl::StatusCode::kDataLoss);
  }
  {  // A payload larger than the receiver's limit.
    SocketPair sp(SOCK_SEQPACKET);
    UniqueFd e(::eventfd(0, EFD_CLOEXEC));
    const int fds[] = {e.get()};
    std::vector<std::byte> big(1000);
    ASSERT_TRUE(send_fds(sp.a.get(), fds, big).ok());
    const size_t before = open_fd_count();
    EXPECT_EQ(recv_fds(sp.b.get(), kMaxPassedFds, 100).status().code(),
              absl::StatusCode::kDataLoss);
    EXPECT_EQ(open_fd_count(), before);
  }
  {  // The same over a stream: the header announces more than the limit.
    SocketPair sp(SOCK_STREAM);
    UniqueFd e(::eventfd(0, EFD_CLOEXEC));
    const int fds[] = {e.get()};
    std::vector<std::byte> big(1000);
    ASSERT_TRUE(send_fds(sp.a.get(), fds, big).ok());
    EXPECT_EQ(recv_fds(sp.b.get(), kMaxPassedFds, 100).status().code(),
              absl::StatusCode::kDataLoss);
  }
  {  // The peer closed.
    SocketPair sp(SOCK_STREAM);
    sp.a.reset();
    EXPECT_EQ(recv_fds(sp.b.get()).status().code(), absl::StatusCode::kUnavailable);
  }
  {  // Nothing to read on a non-blocking socket.
    SocketPair sp(SOCK_STREAM | SOCK_NONBLOCK);
    EXPECT_EQ(recv_fds(sp.b.get()).status().code(), absl::StatusCode::kDeadlineExceeded);
  }
}

TEST(FdPassingTest, SendChecksItsArguments) {
  SocketPair sp(SOCK_STREAM);
  EXPECT_FALSE(send_fds(sp.a.get(), {}, {}).ok());
  std::vector<int> many(kMaxPassedFds + 1, 0);
  EXPECT_FALSE(send_fds(sp.a.get(), many, {}).ok());
  const int fds[] = {0};
  std::vector<std::byte> big(kMaxPassedPayloadBytes + 1);
  EXPECT_FALSE(send_fds(sp.a.get(), fds, big).ok());
}

TEST(PeerHungUpTest, SeesAClosedPeer) {
  SocketPair sp(SOCK_STREAM);
  EXPECT_FALSE(peer_hung_up(sp.a.get()));
  sp.b.reset();
  EXPECT_TRUE(peer_hung_up(sp.a.get()));
}

}  // namespace
}  // namespace herald::shm
