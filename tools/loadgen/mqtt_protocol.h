// `--protocol mqtt`: the engine's ClientProtocol over MQTT 3.1.1 QoS 1 (mqtt_session.h), so the
// same scenario runs against an MQTT broker (Mosquitto with TLS). One topic per client,
// "herald/<index>"; a 1:1 message is a PUBLISH to the peer's topic, its ack the PUBACK.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "tools/loadgen/mqtt_session.h"
#include "tools/loadgen/protocol.h"

namespace herald::tools::loadgen {

std::string mqtt_topic_of(uint32_t index);

class MqttProtocol final : public ClientProtocol {
 public:
  // `client_id` must be unique on the broker (it takes over a session with the same id).
  MqttProtocol(std::string client_id, uint32_t index, uint16_t keepalive_s,
               uint32_t max_packet_bytes);

  void start(std::vector<uint8_t>& out) override;
  absl::Status feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                    ProtocolEvents& events) override;
  void send(const Target& to, uint64_t client_msg_id, std::span<const uint8_t> body,
            std::vector<uint8_t>& out) override;
  void ping(std::vector<uint8_t>& out) override;
  void flush(std::vector<uint8_t>&) override {}  // PUBACKs go out with feed()

 private:
  std::string client_id_;
  std::string topic_;
  uint16_t keepalive_s_;
  uint32_t max_packet_bytes_;
  std::unique_ptr<mqtt::MqttSession> session_;  // one per connection
  uint16_t subscribe_id_ = 0;
  bool connack_ = false;
  bool ready_ = false;
  // Packet id -> client message id, for the PUBACKs (ids are 16 bits and reused).
  std::unordered_map<uint16_t, uint64_t> in_flight_;
};

}  // namespace herald::tools::loadgen
