// The chat protocol one loadgen connection speaks, behind one interface so the engine runs the
// same scenarios over Herald's frames (herald_protocol.h) or MQTT 3.1.1 (mqtt_protocol.h).
// A protocol object is pure: plaintext in, plaintext out, events to the engine; TLS, sockets,
// timers and the bookkeeping of what was acked and delivered are the engine's.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace herald::tools::loadgen {

// Where a message goes: an account (its one loadgen device) or a group, by index.
struct Target {
  enum class Kind : uint8_t { kAccount, kGroup };
  Kind kind = Kind::kAccount;
  uint32_t index = 0;
};

// The server's id for a delivery (Herald's ServerMsgId). A protocol without one (MQTT) reports
// zero, and the engine then dedups on the message itself.
struct ServerId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool empty() const { return hi == 0 && lo == 0; }
  friend bool operator==(const ServerId&, const ServerId&) = default;
};

// What happened on a connection; the engine implements it.
class ProtocolEvents {
 public:
  virtual ~ProtocolEvents() = default;
  // Logged in. `max_unacked` caps messages in flight (0: no server limit); the engine pings
  // every `ping_interval_ms` of silence (0: never).
  virtual void on_ready(uint32_t max_unacked, uint32_t ping_interval_ms) = 0;
  virtual void on_ack(uint64_t client_msg_id) = 0;
  virtual void on_deliver(std::span<const uint8_t> body, const ServerId& id) = 0;
  // A message was refused (client_msg_id 0: an error about no message, only counted). `retry`: send
  // it again (same id) after `retry_after_ms`.
  virtual void on_send_error(uint64_t client_msg_id, std::string_view code, bool retry,
                             uint32_t retry_after_ms) = 0;
  // The session is refused or ended by the server. `retry`: reconnect with the same
  // credentials after `retry_after_ms`; otherwise this client gives up.
  virtual void on_session_error(std::string_view code, bool retry, uint32_t retry_after_ms) = 0;
  virtual void on_pong() = 0;
};

class ClientProtocol {
 public:
  virtual ~ClientProtocol() = default;
  // A new connection's TLS is up: forget the previous connection's state and append the
  // opening bytes (Hello, CONNECT).
  virtual void start(std::vector<uint8_t>& out) = 0;
  // Plaintext from the server, in any pieces. Answers (DeliveryAck, PUBACK) may be appended to
  // `out` now or at flush(). A non-OK status is a protocol violation: the engine closes.
  virtual absl::Status feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                            ProtocolEvents& events) = 0;
  // Only once on_ready() ran.
  virtual void send(const Target& to, uint64_t client_msg_id, std::span<const uint8_t> body,
                    std::vector<uint8_t>& out) = 0;
  virtual void ping(std::vector<uint8_t>& out) = 0;
  // End of the engine's turn: acknowledgements gathered during it, batched.
  virtual void flush(std::vector<uint8_t>& out) = 0;
};

}  // namespace herald::tools::loadgen
