// The dataplane's IPC client: connect, Hello, receive and validate the segment and doorbells.
#include "platform/ipc/client.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "platform/log/log.h"

namespace herald::ipc {
namespace {

absl::Status errno_status(const std::string& what, int err) {
  // ErrnoToStatus appends strerror(err) itself.
  return absl::ErrnoToStatus(err, what);
}

absl::Status set_timeouts(int fd, int timeout_ms) {
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>((timeout_ms % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return errno_status("ipc: setsockopt timeouts", errno);
  }
  return absl::OkStatus();
}

// Reads one message if it is a refusal and turns it into the error the caller returns; nullopt
// when the next message is something else (left in the socket for recv_fds).
std::optional<absl::Status> take_reject(int fd) {
  alignas(8) char buf[kMaxHandshakeBytes];
  ssize_t n;
  int resets = 0;
  do {
    n = ::recv(fd, buf, sizeof(buf), MSG_PEEK);
    // A peer that closes with our Hello still unread makes the kernel report ECONNRESET once
    // (unix(7) keeps it in sk_err, cleared when reported) ahead of the messages it queued
    // before closing, such as its refusal: read on once to get the reason.
  } while (n < 0 && (errno == EINTR || (errno == ECONNRESET && resets++ == 0)));
  if (n < 0) {
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return absl::DeadlineExceededError("ipc: no answer from the control plane in time");
    }
    return errno_status("ipc: recv", err);
  }
  if (n == 0) return absl::UnavailableError("ipc: the control plane closed the connection");
  RejectHeader header{};
  if (static_cast<size_t>(n) < sizeof(header)) return std::nullopt;
  std::memcpy(&header, buf, sizeof(header));
  if (header.magic != kRejectMagic) return std::nullopt;
  (void)::recv(fd, buf, sizeof(buf), 0);  // consume it
  const std::string reason(buf + sizeof(header), static_cast<size_t>(n) - sizeof(header));
  return absl::FailedPreconditionError(
      absl::StrCat("ipc: the control plane refused this dataplane: ",
                   reject_code_name(static_cast<RejectCode>(header.code)), ": ", reason));
}

}  // namespace

absl::StatusOr<ControlPlaneLink> connect_to_controlplane(const ClientOptions& options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.socket_path.empty() || options.socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ipc: bad socket path '", options.socket_path, "'"));
  }
  if (options.workers == 0 || options.workers > kIpcMaxWorkers) {
    return absl::InvalidArgumentError(absl::StrCat("ipc: workers = ", options.workers));
  }
  std::memcpy(addr.sun_path, options.socket_path.data(), options.socket_path.size());
  shm::UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return errno_status("ipc: socket", errno);
  if (absl::Status s = set_timeouts(sock.get(), options.timeout_ms); !s.ok()) return s;
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN) {
      return absl::UnavailableError(
          absl::StrCat("ipc: no control plane at ", options.socket_path, ": ", std::strerror(err)));
    }
    return errno_status(absl::StrCat("ipc: connect ", options.socket_path), err);
  }

  const uint64_t instance_id = options.instance_id != 0 ? options.instance_id : random_u64();
  {
    flatbuffers::FlatBufferBuilder builder(256);
    HelloFields hello;
    hello.plane = Plane::Dataplane;
    hello.ipc_version = options.ipc_version;
    hello.instance_id = instance_id;
    hello.pid = static_cast<uint32_t>(::getpid());
    hello.node_id = options.node_id;
    hello.workers = options.workers;
    build_hello(builder, /*seq=*/1, hello, options.build);
    ssize_t n;
    do {
      n = ::send(sock.get(), builder.GetBufferPointer(), builder.GetSize(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      const int err = errno;
      // A control plane that refuses at accept time (busy) may have closed before our Hello
      // went out; its reason is still waiting in our receive queue.
      if (std::optional<absl::Status> rejected = take_reject(sock.get());
          rejected && rejected->code() == absl::StatusCode::kFailedPrecondition) {
        return *rejected;
      }
      return errno_status("ipc: sending Hello", err);
    }
  }

  if (std::optional<absl::Status> rejected = take_reject(sock.get())) return *rejected;
  auto first = shm::recv_fds(sock.get(), 3, kMaxHandshakeBytes);
  if (!first.ok()) return first.status();
  AcceptHeader header{};
  if (first->payload.size() < sizeof(header)) {
    return absl::DataLossError("ipc: handshake answer shorter than its header");
  }
  std::memcpy(&header, first->payload.data(), sizeof(header));
  if (header.magic != kAcceptMagic || header.fd_count != first->fds.size() || header.fd_count < 2 ||
      header.hello_bytes != first->payload.size() - sizeof(header)) {
    return absl::DataLossError("ipc: malformed handshake answer");
  }
  if (header.workers != options.workers ||
      header.doorbell_messages !=
          (options.workers + kDoorbellsPerMessage - 1) / kDoorbellsPerMessage) {
    return absl::FailedPreconditionError(absl::StrCat("ipc: the control plane answered for ",
                                                      header.workers, " workers, we run ",
                                                      options.workers));
  }
  // The Hello sits after a 16-byte header in a vector's storage, so it is 8-byte aligned.
  const std::span<const std::byte> hello_bytes(first->payload.data() + sizeof(header),
                                               header.hello_bytes);
  const CheckedEnvelope hello_env =
      verify_envelope(static_cast<uint32_t>(Record::Hello), hello_bytes);
  if (hello_env.error != EnvelopeError::kNone) {
    return absl::DataLossError(absl::StrCat("ipc: the control plane's Hello is invalid: ",
                                            envelope_error_name(hello_env.error)));
  }
  const Hello* cp = hello_env.envelope->record_as_Hello();
  if (cp->plane() != Plane::Controlplane || cp->ipc_version() != options.ipc_version) {
    return absl::FailedPreconditionError(
        absl::StrCat("ipc: the control plane speaks ipc_version ", cp->ipc_version()));
  }

  auto segment =
      IpcSegment::attach(std::move(first->fds[0]), {options.workers, options.ring_capacity_bytes});
  if (!segment.ok()) return segment.status();
  auto cp_doorbell = shm::Doorbell::adopt(std::move(first->fds[1]));
  if (!cp_doorbell.ok()) return cp_doorbell.status();
  shm::UniqueFd counters_fd;
  if (header.fd_count == 3) counters_fd = std::move(first->fds[2]);

  std::vector<shm::Doorbell> dp_doorbells;
  dp_doorbells.reserve(options.workers);
  for (uint16_t m = 0; m < header.doorbell_messages; ++m) {
    auto chunk = shm::recv_fds(sock.get(), kDoorbellsPerMessage, sizeof(DoorbellChunkHeader));
    if (!chunk.ok()) return chunk.status();
    DoorbellChunkHeader ch{};
    if (chunk->payload.size() != sizeof(ch)) {
      return absl::DataLossError("ipc: malformed doorbell message");
    }
    std::memcpy(&ch, chunk->payload.data(), sizeof(ch));
    if (ch.magic != kDoorbellChunkMagic || ch.first_worker != dp_doorbells.size() ||
        ch.count != chunk->fds.size() || ch.first_worker + ch.count > options.workers) {
      return absl::DataLossError("ipc: doorbell message out of order or malformed");
    }
    for (shm::UniqueFd& fd : chunk->fds) {
      auto doorbell = shm::Doorbell::adopt(std::move(fd));
      if (!doorbell.ok()) return doorbell.status();
      dp_doorbells.push_back(std::move(*doorbell));
    }
  }
  if (dp_doorbells.size() != options.workers) {
    return absl::DataLossError("ipc: fewer doorbells than workers");
  }

  HelloFields controlplane;
  controlplane.plane = cp->plane();
  controlplane.ipc_version = cp->ipc_version();
  controlplane.instance_id = cp->instance_id();
  controlplane.pid = cp->pid();
  controlplane.node_id = cp->node_id();
  controlplane.workers = cp->workers();
  controlplane.server_msg_time_floor_ms = cp->server_msg_time_floor_ms();
  HLOG_INFO("ipc.connected")
      .kv("path", options.socket_path)
      .kv("workers", options.workers)
      .kv("generation", segment->generation())
      .kv("controlplane_instance", controlplane.instance_id);
  return ControlPlaneLink{std::move(sock),
                          std::move(*segment),
                          std::move(*cp_doorbell),
                          std::move(dp_doorbells),
                          std::move(counters_fd),
                          controlplane,
                          instance_id};
}

}  // namespace herald::ipc
