// The narrow interface between port I/O and everything above it (TLS, sessions, routing). Two
// backends implement it: `kernel` (io_uring over kernel sockets, transport/kernel/) and `dpdk`
// (Herald's own TCP/IP stack, the kernel-bypass issues). What sits above is written once.
//
// One Transport per worker, used only on that worker's thread; events arrive on it, in order
// per connection: on_accepted, then on_data / on_writable any number of times, then exactly one
// on_closed. Nothing here blocks, allocates per byte, or takes a lock.
//
//   class Sessions : public TransportEvents { ... };   // the layer above (tls/ + session/)
//   transport.start(sessions);                         // listening; events flow from here on
//   transport.send(id, bytes);                         // copied; sent in order, batched
//   transport.close(id, CloseMode::kGraceful);         // flush what is queued, then FIN
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace herald::dataplane {

// A connection of one worker. Never reused within a transport's life (a generation in the high
// bits), so a stale id held by a timer or a cross-worker record names nobody instead of a
// stranger: calls with an unknown id are ignored and counted.
using ConnectionId = uint64_t;
inline constexpr ConnectionId kNoConnection = 0;

// The peer's address as the transport saw it (IPv4 or IPv6).
struct PeerAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string to_string() const;  // "203.0.113.7:51234", "[2001:db8::1]:443"
};

// Why a connection ended; every reason is a named counter (transport.closed.<name>).
#define HERALD_CLOSE_REASONS(X)                                                        \
  X(kPeerClosed, "peer_closed", "the peer closed its side (FIN) and we finished ours") \
  X(kPeerReset, "peer_reset", "the peer reset the connection (RST)")                   \
  X(kLocalClose, "local_close", "the layer above called close()")                      \
  X(kSendQueueFull, "send_queue_full", "send() met a full send queue (slow consumer)") \
  X(kIoError, "io_error", "a socket error other than a reset")                         \
  X(kShutdown, "shutdown", "the transport is stopping")

enum class CloseReason : uint8_t {
#define HERALD_CLOSE_REASON_ENUM(name, text, doc) name,
  HERALD_CLOSE_REASONS(HERALD_CLOSE_REASON_ENUM)
#undef HERALD_CLOSE_REASON_ENUM
      kCount
};
const char* close_reason_name(CloseReason reason);

enum class CloseMode : uint8_t {
  kGraceful,  // send what is queued, then FIN; on_closed when done (or on error)
  kAbort,     // drop what is queued and reset now (RST)
};

enum class SendResult : uint8_t {
  kOk,         // queued (copied); the transport sends it in order
  kQueueFull,  // over the connection's send-queue limit: nothing queued, the connection is
               // being closed with kSendQueueFull (DESIGN: a slow consumer is cut off, its
               // messages stay in the store)
  kClosed,     // unknown or closing connection: nothing queued
};

// Implemented by the layer above. Called on the worker's thread, never re-entrantly from inside
// a Transport call (a send() or close() made from a handler takes effect, its events come later).
class TransportEvents {
 public:
  virtual ~TransportEvents() = default;
  virtual void on_accepted(ConnectionId id, const PeerAddress& peer) = 0;
  // Received bytes, in order. Valid only during the call: keep a copy of what you keep.
  virtual void on_data(ConnectionId id, std::span<const uint8_t> bytes) = 0;
  // The send queue fell below the low-water mark after having been above it: send more.
  virtual void on_writable(ConnectionId id) = 0;
  // The end: no more events for `id`, and `id` is invalid from here on.
  virtual void on_closed(ConnectionId id, CloseReason reason) = 0;
  // An active open (DpdkTransport::connect, used by herald-loadgen's dpdk mode) completed its
  // handshake; a failed one ends with on_closed instead. Listening-only users never see it.
  virtual void on_connected(ConnectionId /*id*/) {}
};

struct TransportLimits {
  // Bytes queued and not yet sent, per connection. send() past it fails with kQueueFull.
  uint32_t send_queue_bytes = 256 * 1024;
  // on_writable once a connection that was above this falls below it.
  uint32_t send_low_water_bytes = 64 * 1024;
  // Connections this worker holds at most; accepts beyond are closed at once (counted).
  uint32_t max_connections = 100'000;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Starts listening and delivering events to `events` (which must outlive the transport).
  virtual void start(TransportEvents& events) = 0;
  virtual SendResult send(ConnectionId id, std::span<const uint8_t> bytes) = 0;
  // Several buffers for one connection, in order, as one batch (a TLS layer's records).
  virtual SendResult send_gather(ConnectionId id,
                                 std::span<const std::span<const uint8_t>> parts) = 0;
  virtual void close(ConnectionId id, CloseMode mode) = 0;
  // Backpressure from above: stop (or resume) delivering on_data for `id`.
  virtual void set_reading(ConnectionId id, bool reading) = 0;
  // Bytes queued for `id` and not yet sent (0 for an unknown id).
  virtual uint32_t queued_bytes(ConnectionId id) const = 0;
  // Connections open now.
  virtual uint32_t connections() const = 0;
  // Stops accepting, closes every connection (on_closed with kShutdown for each).
  virtual void stop() = 0;
};

}  // namespace herald::dataplane
