// Shared-memory segments (memfd or hugetlbfs backed) and the SCM_RIGHTS hand-over of their
// descriptors between the control plane and the dataplane. Control-plane code (absl::Status).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/shm/unique_fd.h"

namespace herald::shm {

enum class Backing : uint8_t { kMemfd, kHugetlbfs };

inline constexpr size_t kMemfdPageBytes = 4096;
inline constexpr size_t kHugePageBytes = 2 * 1024 * 1024;

// A MAP_SHARED mapping of a whole memfd. The creator sizes it and seals it against shrinking
// (F_SEAL_SHRINK), so a peer that attaches can never be handed SIGBUS by the creator truncating
// the file under its mapping; attach() refuses descriptors that lack that seal.
class Segment {
 public:
  // A new zero-filled shared segment of at least size_bytes, rounded up to the page size
  // (4 KiB for memfd, 2 MiB for hugetlbfs). `name` shows in /proc/<pid>/fd and /proc/<pid>/maps
  // as "memfd:<name>" (debugging only; at most 249 bytes). Hugetlbfs segments are
  // memfd_create(MFD_HUGETLB | MFD_HUGE_2MB) and are populated at creation, so a machine without
  // enough free 2 MiB pages fails here with kResourceExhausted, not later with SIGBUS.
  static absl::StatusOr<Segment> create(std::string_view name, size_t size_bytes,
                                        Backing backing = Backing::kMemfd);

  // Maps a segment received from another process; takes ownership of fd (closed on failure
  // too). The size comes from fstat, the backing from fstatfs. Fails if the descriptor is not
  // a sealed (F_SEAL_SHRINK) memfd or if its size is zero or not a whole number of pages.
  static absl::StatusOr<Segment> attach(int fd, bool read_only = false);
  static absl::StatusOr<Segment> attach(UniqueFd fd, bool read_only = false);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  std::byte* data() const { return data_; }
  size_t size() const { return size_bytes_; }
  // Still owned by the Segment: pass it to send_fds() to share the segment.
  int fd() const { return fd_.get(); }
  Backing backing() const { return backing_; }
  bool read_only() const { return read_only_; }
  std::span<std::byte> bytes() const { return {data_, size_bytes_}; }

 private:
  Segment(UniqueFd fd, std::byte* data, size_t size_bytes, Backing backing, bool read_only);
  void unmap();

  UniqueFd fd_;
  std::byte* data_ = nullptr;
  size_t size_bytes_ = 0;
  Backing backing_ = Backing::kMemfd;
  bool read_only_ = false;
};

// Limits of one descriptor hand-over. The kernel's own cap is SCM_MAX_FD (253); ours is lower
// because a message carries a segment plus a few doorbells, never hundreds of descriptors.
inline constexpr size_t kMaxPassedFds = 16;
inline constexpr size_t kMaxPassedPayloadBytes = 4096;

// Hands descriptors (1..kMaxPassedFds) and a small payload (0..kMaxPassedPayloadBytes) over an
// AF_UNIX socket with SCM_RIGHTS. Works on SOCK_STREAM, SOCK_SEQPACKET and SOCK_DGRAM sockets:
// the message is framed with a small header (magic, fd count, payload length), so the receiver
// can tell a whole message from a truncated or foreign one. The caller keeps its descriptors.
absl::Status send_fds(int unix_sock, std::span<const int> fds, std::span<const std::byte> payload);

struct ReceivedFds {
  std::vector<UniqueFd> fds;  // owned by the caller; close-on-exec
  std::vector<std::byte> payload;
};

// Receives one send_fds() message. Blocks unless the socket is non-blocking or has
// SO_RCVTIMEO (then kUnavailable / kDeadlineExceeded). Every descriptor that arrived is closed
// again on any error, so a bad peer cannot leak descriptors into this process. Errors:
//   kUnavailable      the peer closed the socket (EOF) or nothing to read (EAGAIN)
//   kDataLoss         MSG_CTRUNC / MSG_TRUNC (more descriptors or bytes than the limits),
//                     a bad header, or descriptor count different from the header's
//   kInvalidArgument  limits above the compile-time maxima
absl::StatusOr<ReceivedFds> recv_fds(int unix_sock, size_t max_fds = kMaxPassedFds,
                                     size_t max_payload_bytes = kMaxPassedPayloadBytes);

// True when the other end of a connected socket has gone (closed it, or its process died):
// poll() reports POLLHUP/POLLRDHUP/POLLERR (SOCK_STREAM / SOCK_SEQPACKET; a datagram socket
// has no hang-up). Never blocks. Lets a producer whose ring stays full
// tell a slow consumer from a dead one.
[[nodiscard]] bool peer_hung_up(int sock);

}  // namespace herald::shm
