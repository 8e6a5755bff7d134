// The client side of MQTT 3.1.1 (OASIS standard, 29 October 2014) for herald-loadgen's
// `--protocol mqtt` mode: encodes CONNECT/SUBSCRIBE/PUBLISH/PINGREQ/DISCONNECT, parses what a
// broker sends back, and acknowledges QoS 1 deliveries. Bytes in, bytes out: no socket, no clock.
//
//   MqttSession session({.client_id = "c1"});
//   session.connect(out); session.subscribe("herald/c1", out);   // pipelined, then send `out`
//   auto status = session.feed(received, out, [&](const MqttEvent& e) { ... });
//   // send `out` again: it now holds the PUBACKs for the QoS 1 messages just delivered
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"

namespace herald::tools::mqtt {

struct MqttSessionOptions {
  std::string client_id;      // at most 65535 bytes of UTF-8; empty asks the broker to assign one
  uint16_t keepalive_s = 60;  // sent in CONNECT; the caller sends ping() within it
  bool clean_session = true;
  // Largest packet accepted from the broker, fixed header included; a larger one fails feed()
  // as soon as its length is known, before any of its body is buffered.
  uint32_t max_packet_bytes = 1 << 20;
};

struct MqttEvent {
  enum class Kind : uint8_t { kConnAck, kSubAck, kPubAck, kPublish, kPingResp };
  Kind kind;
  // CONNACK: the connect return code (0 accepted, 1-5 refused, §3.2.2.3); SUBACK: the granted
  // QoS (0, 1) or 0x80 for a refused subscription (§3.9.3).
  uint8_t return_code = 0;
  uint16_t packet_id = 0;            // SUBACK, PUBACK, and PUBLISH with QoS 1 (0 for QoS 0)
  std::string_view topic;            // PUBLISH
  std::span<const uint8_t> payload;  // PUBLISH
  // Views are valid during the callback only.
};

// Counters since construction. "sent" counts packets encoded into `out`.
struct MqttSessionStats {
  uint64_t publishes_sent = 0;
  uint64_t pubacks_received = 0;  // for a publish in flight
  uint64_t pubacks_unknown = 0;   // duplicate or never sent: counted, otherwise ignored
  uint64_t subscribes_sent = 0;
  uint64_t subacks_received = 0;
  uint64_t subacks_refused = 0;  // return code 0x80
  uint64_t subacks_unknown = 0;  // no SUBSCRIBE in flight with that packet id
  uint64_t publishes_received = 0;
  uint64_t publishes_received_dup = 0;  // DUP flag set: the broker may be redelivering
  uint64_t pubacks_sent = 0;
  uint64_t pings_sent = 0;
  uint64_t pingresps_received = 0;
  uint64_t bytes_received = 0;
  uint64_t packets_received = 0;
};

class MqttSession {
 public:
  explicit MqttSession(MqttSessionOptions options);

  // Each appends one packet to `out`. Packets may be pipelined before the CONNACK arrives
  // (§3.1.4: the client need not wait for it).
  void connect(std::vector<uint8_t>& out);
  // QoS 1 subscription to one topic filter. Returns the packet id, or 0 (nothing written) when
  // all 65535 ids are in flight.
  uint16_t subscribe(std::string_view topic, std::vector<uint8_t>& out);
  // QoS 1 publish, not retained. The id stays in flight until its PUBACK; returns it, or 0
  // (nothing written) when all 65535 ids are in flight.
  uint16_t publish(std::string_view topic, std::span<const uint8_t> payload,
                   std::vector<uint8_t>& out);
  void ping(std::vector<uint8_t>& out);
  void disconnect(std::vector<uint8_t>& out);

  // Parses every complete packet in the bytes received so far (`in` after whatever an earlier
  // call kept), calls `on_event` once per packet, and appends a PUBACK to `out` for each QoS 1
  // PUBLISH. An incomplete packet is kept for the next call. Errors (the stream cannot be
  // trusted after one, so every later call fails too):
  //   DataLoss            malformed: reserved flags, bad lengths, ids 0, bad UTF-8, ...
  //   InvalidArgument     a packet this client must not receive (CONNECT, QoS 2, UNSUBACK,
  //                       anything before the CONNACK, a second CONNACK, ...)
  //   ResourceExhausted   a packet larger than max_packet_bytes
  //   FailedPrecondition/InvalidArgument/Unavailable/Unauthenticated/PermissionDenied
  //                       CONNACK return codes 1..5 (after the kConnAck event)
  // `on_event` must not call feed() on this session; it may call the other methods.
  absl::Status feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                    const std::function<void(const MqttEvent&)>& on_event);

  bool connack_received() const { return connack_received_; }
  // QoS 1 publishes sent and not yet acknowledged.
  size_t publishes_in_flight() const { return publishes_in_flight_.size(); }
  const MqttSessionStats& stats() const { return stats_; }
  const MqttSessionOptions& options() const { return options_; }

 private:
  // Next free packet id after next_packet_id_, skipping 0 and ids in flight; 0 when none.
  uint16_t take_packet_id();
  // Parses one complete packet (fixed header byte, body); appends acknowledgements to `out`.
  absl::Status handle_packet(uint8_t header, std::span<const uint8_t> body,
                             std::vector<uint8_t>& out,
                             const std::function<void(const MqttEvent&)>& on_event);
  // Parses packets from `bytes`; returns how many bytes whole packets took.
  absl::Status parse(std::span<const uint8_t> bytes, size_t& consumed, std::vector<uint8_t>& out,
                     const std::function<void(const MqttEvent&)>& on_event);
  absl::Status fail(absl::Status status);

  MqttSessionOptions options_;
  MqttSessionStats stats_;
  uint16_t next_packet_id_ = 0;  // the last id handed out
  // Publish and subscribe ids share one space (§2.3.1: an id is unique among a client's
  // unacknowledged packets), so both sets are checked when an id is taken.
  std::unordered_set<uint16_t> publishes_in_flight_;
  std::unordered_set<uint16_t> subscribes_in_flight_;
  bool connect_sent_ = false;
  bool connack_received_ = false;
  std::vector<uint8_t> pending_;  // the start of a packet whose rest has not arrived
  absl::Status failed_;           // the first error; sticky
};

}  // namespace herald::tools::mqtt
