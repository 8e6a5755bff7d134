// The IPC handshake on the control plane's Unix socket (SOCK_SEQPACKET, one message per
// datagram-like packet): what each side sends, shared by the server (controlplane/ipc) and the
// dataplane's client (client.h).
//
//   DP -> CP   Envelope{Hello{plane=Dataplane, ipc_version, instance_id, pid, workers}}
//   CP -> DP   accepted: send_fds([ipc segment, cp doorbell, counters segment?],
//                                 AcceptHeader + Envelope{Hello{plane=Controlplane, ...}})
//              then ceil(workers / kDoorbellsPerMessage) x
//                         send_fds([dp doorbell of worker first .. first+count-1],
//                                  DoorbellChunkHeader)
//   CP -> DP   refused:  RejectHeader + reason text (no descriptors), then the CP closes.
//
// Doorbells travel in chunks because SCM_RIGHTS messages are capped at shm::kMaxPassedFds and a
// dataplane may run up to 128 workers. After the handshake the socket carries nothing: it stays
// open so each side notices the other's death (EOF / POLLHUP).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/shm/segment.h"
#include "platform/shm/unique_fd.h"

namespace herald::ipc {

inline constexpr uint32_t kAcceptMagic = 0x41504948;         // "HIPA"
inline constexpr uint32_t kDoorbellChunkMagic = 0x44504948;  // "HIPD"
inline constexpr uint32_t kRejectMagic = 0x58504948;         // "HIPX"
// Largest handshake message either side sends or accepts.
inline constexpr size_t kMaxHandshakeBytes = 2048;
inline constexpr size_t kDoorbellsPerMessage = shm::kMaxPassedFds;

struct AcceptHeader {
  uint32_t magic;
  uint16_t workers;
  uint16_t doorbell_messages;  // DoorbellChunk messages that follow
  uint32_t fd_count;           // descriptors in this message: 2, or 3 with counters
  uint32_t hello_bytes;        // the Envelope that follows this header
};
static_assert(sizeof(AcceptHeader) == 16);

struct DoorbellChunkHeader {
  uint32_t magic;
  uint16_t first_worker;
  uint16_t count;
};
static_assert(sizeof(DoorbellChunkHeader) == 8);

// Why the control plane refused a dataplane.
enum class RejectCode : uint32_t {
  kBadHello = 1,         // not a Hello Envelope, or not from a dataplane
  kVersionMismatch = 2,  // ipc_version differs
  kWorkerMismatch = 3,   // workers differs from the control plane's config
  kBusy = 4,             // another dataplane is connected
  kInternal = 5,         // the control plane failed to hand the segment over
  kTimeout = 6,          // no Hello within the handshake timeout
};
const char* reject_code_name(RejectCode code);

struct RejectHeader {
  uint32_t magic;
  uint32_t code;  // RejectCode
};
static_assert(sizeof(RejectHeader) == 8);

// One refusal message (header + reason, the reason cut to fit kMaxHandshakeBytes).
std::string encode_reject(RejectCode code, std::string_view reason);

// Control plane: a listening SOCK_SEQPACKET socket at `path` (non-blocking, close-on-exec),
// mode 0600. A socket file left by a dead control plane (connect() refused) is removed first;
// a live one (connect() succeeds) or a path that is not a socket fails clearly. The parent
// directory is created (0750) when missing.
absl::StatusOr<shm::UniqueFd> listen_ipc_socket(const std::string& path, int backlog = 8);

}  // namespace herald::ipc
