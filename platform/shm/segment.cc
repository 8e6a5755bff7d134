// Shared-memory segments on memfd / hugetlbfs, and descriptor hand-over with SCM_RIGHTS.
// References: memfd_create(2), fcntl(2) "File Sealing", unix(7) "Ancillary messages", cmsg(3).
#include "platform/shm/segment.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "platform/log/log.h"

#ifndef MFD_HUGE_2MB
// From <linux/memfd.h>: log2(2 MiB) in the MFD_HUGE_SHIFT (26) bits.
#define MFD_HUGE_2MB (21U << 26)
#endif

namespace herald::shm {
namespace {

std::string errno_text(int err) {
  return absl::StrCat(std::strerror(err), " (errno ", err, ")");
}

// Free 2 MiB pages in the default pool, or -1 if the kernel does not say (no hugetlb support).
long free_huge_pages_2mb() {
  FILE* f = std::fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
  if (f == nullptr) return -1;
  long n = -1;
  if (std::fscanf(f, "%ld", &n) != 1) n = -1;
  std::fclose(f);
  return n;
}

size_t page_bytes(Backing backing) {
  return backing == Backing::kHugetlbfs ? kHugePageBytes : kMemfdPageBytes;
}

// Maps the whole file. MAP_POPULATE pre-faults every page: segments are sized at start-up, and
// the dataplane must not take page faults on its hot path later. For hugetlbfs it also makes
// the huge-page reservation fail here (ENOMEM) instead of a SIGBUS on first touch.
absl::StatusOr<std::byte*> map_fd(int fd, size_t size_bytes, bool read_only) {
  const int prot = read_only ? PROT_READ : (PROT_READ | PROT_WRITE);
  void* p = ::mmap(nullptr, size_bytes, prot, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("shm: mmap of ", size_bytes, " bytes failed: ", errno_text(err)));
  }
  return static_cast<std::byte*>(p);
}

}  // namespace

Segment::Segment(UniqueFd fd, std::byte* data, size_t size_bytes, Backing backing, bool read_only)
    : fd_(std::move(fd)),
      data_(data),
      size_bytes_(size_bytes),
      backing_(backing),
      read_only_(read_only) {}

Segment::Segment(Segment&& other) noexcept
    : fd_(std::move(other.fd_)),
      data_(std::exchange(other.data_, nullptr)),
      size_bytes_(std::exchange(other.size_bytes_, 0)),
      backing_(other.backing_),
      read_only_(other.read_only_) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    unmap();
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
    backing_ = other.backing_;
    read_only_ = other.read_only_;
  }
  return *this;
}

Segment::~Segment() {
  unmap();
}

void Segment::unmap() {
  if (data_ != nullptr) ::munmap(data_, size_bytes_);
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::StatusOr<Segment> Segment::create(std::string_view name, size_t size_bytes, Backing backing) {
  // memfd_create(2): the name is at most 249 bytes (NAME_MAX minus the "memfd:" prefix).
  if (name.empty() || name.size() > 249 || name.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("shm: segment name must be 1..249 bytes without NUL");
  }
  const size_t page = page_bytes(backing);
  if (size_bytes == 0 || size_bytes > std::numeric_limits<size_t>::max() / 2) {
    return absl::InvalidArgumentError(absl::StrCat("shm: bad segment size ", size_bytes));
  }
  const size_t rounded = (size_bytes + page - 1) / page * page;

  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (backing == Backing::kHugetlbfs) flags |= MFD_HUGETLB | MFD_HUGE_2MB;
  const std::string cname(name);
  UniqueFd fd(::memfd_create(cname.c_str(), flags));
  if (!fd) {
    const int err = errno;
    if (backing == Backing::kHugetlbfs) {
      return absl::UnavailableError(
          absl::StrCat("shm: memfd_create(MFD_HUGETLB|MFD_HUGE_2MB) failed: ", errno_text(err),
                       "; the kernel has no 2 MiB hugetlb support or it is disabled"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("shm: memfd_create failed: ", errno_text(err)));
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(rounded)) != 0) {
    const int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("shm: ftruncate to ", rounded, " bytes failed: ", errno_text(err)));
  }
  // Fixed size from here on: a peer's mapping can never be cut short (SIGBUS) or see the file
  // change length. F_SEAL_SEAL is left off so an owner may still add F_SEAL_FUTURE_WRITE.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: sealing failed: ", errno_text(err)));
  }
  auto data = map_fd(fd.get(), rounded, /*read_only=*/false);
  if (!data.ok()) {
    if (backing == Backing::kHugetlbfs) {
      const long free_pages = free_huge_pages_2mb();
      return absl::ResourceExhaustedError(absl::StrCat(
          "shm: cannot reserve ", rounded / kHugePageBytes, " huge pages of 2 MiB for segment '",
          cname, "' (free 2 MiB pages: ", free_pages,
          "); raise vm.nr_hugepages or boot with hugepages=N. ", data.status().message()));
    }
    return data.status();
  }
  HLOG_INFO("shm.segment_created")
      .kv("name", name)
      .kv("size_bytes", rounded)
      .kv("backing", backing == Backing::kHugetlbfs ? "hugetlbfs" : "memfd");
  return Segment(std::move(fd), *data, rounded, backing, /*read_only=*/false);
}

absl::StatusOr<Segment> Segment::attach(int fd, bool read_only) {
  return attach(UniqueFd(fd), read_only);
}

absl::StatusOr<Segment> Segment::attach(UniqueFd fd, bool read_only) {
  if (!fd) return absl::InvalidArgumentError("shm: attach needs a descriptor");
  struct statfs fs {};
  if (::fstatfs(fd.get(), &fs) != 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: fstatfs failed: ", errno_text(err)));
  }
  Backing backing;
  if (fs.f_type == HUGETLBFS_MAGIC) {
    backing = Backing::kHugetlbfs;
  } else if (fs.f_type == TMPFS_MAGIC) {  // memfd files live on an internal shmem mount
    backing = Backing::kMemfd;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: descriptor is not a memfd (filesystem magic 0x",
                     absl::Hex(static_cast<uint64_t>(fs.f_type)), ")"));
  }
  const int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return absl::FailedPreconditionError(
        "shm: segment is not sealed against shrinking (F_SEAL_SHRINK); refusing to map a file "
        "the sender could truncate under us");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: fstat failed: ", errno_text(err)));
  }
  const auto size_bytes = static_cast<size_t>(st.st_size);
  if (st.st_size <= 0 || size_bytes % page_bytes(backing) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: segment size ", st.st_size, " is not a positive number of pages"));
  }
  auto data = map_fd(fd.get(), size_bytes, read_only);
  if (!data.ok()) return data.status();
  return Segment(std::move(fd), *data, size_bytes, backing, read_only);
}

// --- SCM_RIGHTS hand-over -------------------------------------------------------------------

namespace {

// Frames every send_fds() message, so the receiver can check that what it got is whole.
struct FdMessageHeader {
  uint32_t magic;
  uint32_t fd_count;
  uint32_t payload_bytes;
  uint32_t reserved;
};
static_assert(sizeof(FdMessageHeader) == 16);
constexpr uint32_t kFdMessageMagic = 0x31444648;  // "HFD1" little-endian

// Room for kMaxPassedFds descriptors plus an SCM_CREDENTIALS message, which the kernel adds
// when the receiving socket has SO_PASSCRED on (it would otherwise truncate our rights).
constexpr size_t kControlBytes = CMSG_SPACE(kMaxPassedFds * sizeof(int)) + CMSG_SPACE(64);

int socket_type(int sock) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return -1;
  return type;
}

// One recvmsg: appends every descriptor found to *fds (even on error, so the caller closes
// them), and reports the flags.
ssize_t recv_with_fds(int sock, void* buf, size_t len, std::vector<UniqueFd>* fds, int* flags_out) {
  alignas(struct cmsghdr) char control[kControlBytes];
  struct iovec iov = {buf, len};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, p + i * sizeof(int), sizeof(int));
      fds->emplace_back(fd);
    }
  }
  *flags_out = msg.msg_flags;
  return n;
}

absl::Status recv_error(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return absl::DeadlineExceededError("shm: recv_fds: nothing received (EAGAIN / timeout)");
  }
  return absl::ErrnoToStatus(err, absl::StrCat("shm: recv_fds: recvmsg failed: ", errno_text(err)));
}

}  // namespace

absl::Status send_fds(int unix_sock, std::span<const int> fds, std::span<const std::byte> payload) {
  if (fds.empty() || fds.size() > kMaxPassedFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: send_fds takes 1..", kMaxPassedFds, " descriptors, got ", fds.size()));
  }
  if (payload.size() > kMaxPassedPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("shm: send_fds payload of ", payload.size(),
                                                   " bytes exceeds ", kMaxPassedPayloadBytes));
  }
  const FdMessageHeader header{kFdMessageMagic, static_cast<uint32_t>(fds.size()),
                               static_cast<uint32_t>(payload.size()), 0};
  alignas(struct cmsghdr) char control[CMSG_SPACE(kMaxPassedFds * sizeof(int))] = {};
  struct iovec iov[2] = {
      {const_cast<FdMessageHeader*>(&header), sizeof(header)},
      {const_cast<std::byte*>(payload.data()), payload.size()},
  };
  struct msghdr msg {};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));

  const size_t total = sizeof(header) + payload.size();
  ssize_t n;
  do {
    n = ::sendmsg(unix_sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err,
                               absl::StrCat("shm: send_fds: sendmsg failed: ", errno_text(err)));
  }
  // Only a stream socket sends part of a message; the descriptors rode on the first byte, the
  // rest goes as plain data.
  size_t sent = static_cast<size_t>(n);
  while (sent < total) {
    const std::byte* src;
    size_t len;
    if (sent < sizeof(header)) {
      src = reinterpret_cast<const std::byte*>(&header) + sent;
      len = sizeof(header) - sent;
    } else {
      src = payload.data() + (sent - sizeof(header));
      len = total - sent;
    }
    do {
      n = ::send(unix_sock, src, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      const int err = errno;
      return absl::ErrnoToStatus(err,
                                 absl::StrCat("shm: send_fds: send failed: ", errno_text(err)));
    }
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedFds> recv_fds(int unix_sock, size_t max_fds, size_t max_payload_bytes) {
  if (max_fds == 0 || max_fds > kMaxPassedFds || max_payload_bytes > kMaxPassedPayloadBytes) {
    return absl::InvalidArgumentError("shm: recv_fds limits out of range");
  }
  const int type = socket_type(unix_sock);
  if (type < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: recv_fds: not a socket: ", errno_text(err)));
  }
  ReceivedFds out;  // descriptors close themselves on every early return below
  FdMessageHeader header{};
  int flags = 0;

  if (type == SOCK_STREAM) {
    // Read exactly the header first: unix stream sockets never merge data of two messages that
    // carry descriptors into one read, but a larger read could swallow the start of the next
    // message. Descriptors arrive with the first byte of the message.
    size_t got = 0;
    while (got < sizeof(header)) {
      const size_t fds_before = out.fds.size();
      const ssize_t n = recv_with_fds(unix_sock, reinterpret_cast<char*>(&header) + got,
                                      sizeof(header) - got, &out.fds, &flags);
      if (n < 0) return recv_error(errno);
      if (n == 0) return absl::UnavailableError("shm: recv_fds: peer closed the socket");
      if (flags & MSG_CTRUNC) {
        return absl::DataLossError("shm: recv_fds: control data truncated (MSG_CTRUNC)");
      }
      if (got > 0 && out.fds.size() != fds_before) {
        return absl::DataLossError("shm: recv_fds: descriptors in the middle of a message");
      }
      got += static_cast<size_t>(n);
    }
  } else {
    // Datagram / seqpacket: the whole message in one read; MSG_TRUNC says it was larger.
    out.payload.resize(sizeof(header) + max_payload_bytes);
    const ssize_t n =
        recv_with_fds(unix_sock, out.payload.data(), out.payload.size(), &out.fds, &flags);
    if (n < 0) return recv_error(errno);
    if (n == 0) return absl::UnavailableError("shm: recv_fds: peer closed the socket");
    if (flags & MSG_CTRUNC) {
      return absl::DataLossError("shm: recv_fds: control data truncated (MSG_CTRUNC)");
    }
    if (flags & MSG_TRUNC) {
      return absl::DataLossError("shm: recv_fds: message larger than the payload limit");
    }
    if (static_cast<size_t>(n) < sizeof(header)) {
      return absl::DataLossError("shm: recv_fds: message shorter than its header");
    }
    std::memcpy(&header, out.payload.data(), sizeof(header));
    if (header.payload_bytes != static_cast<size_t>(n) - sizeof(header)) {
      return absl::DataLossError("shm: recv_fds: payload length does not match the header");
    }
    out.payload.erase(out.payload.begin(), out.payload.begin() + sizeof(header));
    out.payload.resize(static_cast<size_t>(n) - sizeof(header));
  }

  if (header.magic != kFdMessageMagic) {
    return absl::DataLossError("shm: recv_fds: bad message magic (not a send_fds message)");
  }
  if (header.fd_count != out.fds.size() || header.fd_count > max_fds) {
    return absl::DataLossError(absl::StrCat("shm: recv_fds: header announces ", header.fd_count,
                                            " descriptors, received ", out.fds.size()));
  }
  if (header.payload_bytes > max_payload_bytes) {
    return absl::DataLossError(absl::StrCat("shm: recv_fds: payload of ", header.payload_bytes,
                                            " bytes exceeds the limit ", max_payload_bytes));
  }
  if (type == SOCK_STREAM) {
    out.payload.resize(header.payload_bytes);
    size_t got = 0;
    while (got < out.payload.size()) {
      const ssize_t n = recv_with_fds(unix_sock, out.payload.data() + got, out.payload.size() - got,
                                      &out.fds, &flags);
      if (n < 0) return recv_error(errno);
      if (n == 0) return absl::UnavailableError("shm: recv_fds: peer closed mid-message");
      if (out.fds.size() != header.fd_count) {
        return absl::DataLossError("shm: recv_fds: descriptors in the middle of a message");
      }
      got += static_cast<size_t>(n);
    }
  }
  return out;
}

bool peer_hung_up(int sock) {
  struct pollfd p = {sock, POLLRDHUP, 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return true;  // a socket we cannot even poll is as good as gone
  return (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace herald::shm
