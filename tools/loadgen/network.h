// The worker's view of the network: non-blocking client connections to the target, whatever
// carries them. Two implementations: kernel sockets under epoll (kernel_network.cc, the default)
// and Herald's own TCP/IP stack on a DPDK port (dpdk_network.h, `--dpdk-port`), so the same
// engine (engine.cc) drives either and the figures compare like with like.
//
//   auto net = make_kernel_network(plan);
//   absl::StatusOr<NetHandle> h = net->connect(token);   // token: the engine's (generation,
//   client) loop: ...; net->wait(timeout_ns, events);            // events for tokens, in order
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace herald::tools::loadgen {

struct WorkerPlan;

// A connection as the network knows it (a socket, a ConnectionId); kNoHandle for none.
using NetHandle = int64_t;
inline constexpr NetHandle kNoHandle = -1;

// Delivered only from inside ClientNetwork::wait(). A handler may call send() and close() (a
// connection closed inside a handler gets no further events); it never calls wait().
class NetworkEvents {
 public:
  virtual ~NetworkEvents() = default;
  virtual void on_connected(uint64_t token) = 0;
  // Bytes received, in order; valid only during the call.
  virtual void on_data(uint64_t token, std::span<const uint8_t> bytes) = 0;
  // The peer finished sending (FIN): no more data will come.
  virtual void on_eof(uint64_t token) = 0;
  // The connection failed (refused, reset, timed out), before or after on_connected. `reason`
  // names it for the results ("connect_ECONNREFUSED", "reset"). The handle is gone already:
  // do not close() it.
  virtual void on_failed(uint64_t token, const std::string& reason) = 0;
  // A send() that took less than it was given can take more now.
  virtual void on_writable(uint64_t token) = 0;
  // The link to the target went down (false) or came back (true); only a network with a link
  // of its own reports it (the DPDK mode's port: the dataplane restarted). Down comes before
  // the on_failed("link_down") of every connection it ended; while down, connect() fails.
  virtual void on_link(bool up) = 0;
};

class ClientNetwork {
 public:
  virtual ~ClientNetwork() = default;
  // Starts a connection to the target; `token` comes back with each of its events. An error
  // names why nothing was started ("socket_EMFILE").
  virtual absl::StatusOr<NetHandle> connect(uint64_t token) = 0;
  // Bytes taken, 0..bytes.size(): fewer means the connection's queue is full (on_writable
  // follows). An error means the connection failed (the caller closes it).
  virtual absl::StatusOr<size_t> send(NetHandle handle, std::span<const uint8_t> bytes) = 0;
  // Ends the connection at once; no events follow for it. What is still open when the
  // network is destroyed ends there (the run is over: kernel sockets are closed, the DPDK
  // stack resets each).
  virtual void close(NetHandle handle) = 0;
  // Waits until something happened or `timeout_ns` passed (0: just look), delivering events.
  virtual void wait(int64_t timeout_ns, NetworkEvents& events) = 0;
};

// Kernel sockets, edge-triggered epoll; source addresses from the plan's options round-robin.
absl::StatusOr<std::unique_ptr<ClientNetwork>> make_kernel_network(const WorkerPlan& plan);

}  // namespace herald::tools::loadgen
