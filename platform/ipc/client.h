// The dataplane's side of the IPC handshake: connect to the control plane's Unix socket, say
// Hello, receive and validate the shared segment and the doorbells. Blocking, with a timeout:
// it runs at start-up and on reconnect, never on the packet path.
//
//   auto link = ipc::connect_to_controlplane({.socket_path = "/run/herald/ipc.sock",
//                                             .workers = 4});
//   // worker i: produce on link->segment.producer(i, Direction::kDpToCp) with
//   //   set_doorbell(link->cp_doorbell.fd()); consume kCpToDp, sleeping on dp_doorbells[i].
//   // Keep link->socket open: its closing is how the control plane learns we are gone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/ipc/envelope.h"
#include "platform/ipc/handshake.h"
#include "platform/ipc/segment.h"
#include "platform/shm/doorbell.h"
#include "platform/shm/unique_fd.h"

namespace herald::ipc {

struct ClientOptions {
  std::string socket_path;
  uint16_t workers = 1;
  // Expected ring capacity (the dataplane's config shm.ring_bytes_per_worker); 0: any.
  uint64_t ring_capacity_bytes = 0;
  // This process start's id (random when 0); a new one tells the control plane we restarted.
  uint64_t instance_id = 0;
  uint16_t node_id = 0;
  std::string build;
  // For each blocking step (connect, send, each receive).
  int timeout_ms = 5000;
  // Tests only: announce another schema version.
  uint16_t ipc_version = kIpcVersion;
};

struct ControlPlaneLink {
  shm::UniqueFd socket;  // keep open for the life of the link
  IpcSegment segment;
  shm::Doorbell cp_doorbell;                // every worker's dp_to_cp producer rings this
  std::vector<shm::Doorbell> dp_doorbells;  // worker i sleeps on dp_doorbells[i]
  shm::UniqueFd counters_fd;                // the counters segment; invalid if none was sent
  HelloFields controlplane;                 // the control plane's Hello
  uint64_t instance_id = 0;                 // ours, as announced
};

// Errors: kUnavailable when nobody listens at the path (retry later); kFailedPrecondition when
// the control plane refused us (the message names the reason: "version_mismatch: ..."), or the
// segment it sent does not match our layout; kDeadlineExceeded on timeout; kDataLoss when the
// control plane's messages are malformed.
absl::StatusOr<ControlPlaneLink> connect_to_controlplane(const ClientOptions& options);

}  // namespace herald::ipc
