// The interface between the TLS layer (tls/) and the session layer (session/): decrypted bytes
// going up, plaintext going down. The session layer is written against it alone, so its tests
// and fuzzer drive it without TLS, and the TLS layer knows nothing of frames.
#pragma once

#include <cstdint>
#include <span>

#include "dataplane/transport/transport.h"

namespace herald::dataplane {

// Implemented by the layer above TLS. Same rules as TransportEvents: one worker's thread, in
// order per connection (on_open, then on_plaintext / on_writable, then exactly one on_closed),
// never re-entered from inside a PlaintextChannel call.
class PlaintextEvents {
 public:
  virtual ~PlaintextEvents() = default;
  // The transport accepted the connection; the TLS handshake is starting (the session's
  // handshake timeout runs from here).
  virtual void on_open(ConnectionId id, const PeerAddress& peer) = 0;
  // Decrypted bytes, in order, in pieces of any size. Valid only during the call.
  virtual void on_plaintext(ConnectionId id, std::span<const uint8_t> bytes) = 0;
  // The transport's send queue drained below its low-water mark.
  virtual void on_writable(ConnectionId id) = 0;
  // The end: no more events for `id`.
  virtual void on_closed(ConnectionId id, CloseReason reason) = 0;
};

// Implemented by the TLS layer (and by fakes in tests).
class PlaintextChannel {
 public:
  virtual ~PlaintextChannel() = default;
  // Encrypts and queues all of `bytes`, or nothing: false when the connection is unknown,
  // closing, not yet through its TLS handshake, or its transport queue is full (the transport
  // then closes it, and on_closed follows).
  [[nodiscard]] virtual bool send(ConnectionId id, std::span<const uint8_t> bytes) = 0;
  // kGraceful: close_notify, what is queued, then FIN. kAbort: reset now. on_closed follows.
  virtual void close(ConnectionId id, CloseMode mode) = 0;
  // Bytes queued and not yet on the wire (ciphertext; the TLS overhead is small).
  [[nodiscard]] virtual uint32_t queued_bytes(ConnectionId id) const = 0;
  // Backpressure: stop (or resume) reading from the peer.
  virtual void set_reading(ConnectionId id, bool reading) = 0;
  // The connection is idle: drop what can be made again on its next use (TLS: the record
  // keys). Optional; nothing observable changes.
  virtual void park(ConnectionId /*id*/) {}
};

}  // namespace herald::dataplane
