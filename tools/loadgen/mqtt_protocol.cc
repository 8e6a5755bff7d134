// MQTT 3.1.1 for loadgen connections (mqtt_protocol.h).
#include "tools/loadgen/mqtt_protocol.h"

namespace herald::tools::loadgen {

std::string mqtt_topic_of(uint32_t index) {
  return "herald/" + std::to_string(index);
}

MqttProtocol::MqttProtocol(std::string client_id, uint32_t index, uint16_t keepalive_s,
                           uint32_t max_packet_bytes)
    : client_id_(std::move(client_id)),
      topic_(mqtt_topic_of(index)),
      keepalive_s_(keepalive_s),
      max_packet_bytes_(max_packet_bytes) {}

void MqttProtocol::start(std::vector<uint8_t>& out) {
  // A clean session per connection: what was in flight is resent by the engine (same client
  // message id, a new packet id), and the receiver's dedup counts a second copy as a
  // redelivery.
  session_ = std::make_unique<mqtt::MqttSession>(
      mqtt::MqttSessionOptions{.client_id = client_id_,
                               .keepalive_s = keepalive_s_,
                               .clean_session = true,
                               .max_packet_bytes = max_packet_bytes_});
  in_flight_.clear();
  connack_ = false;
  ready_ = false;
  session_->connect(out);
  // Pipelined before the CONNACK (MQTT 3.1.1 §3.1.4 lets a client send before it).
  subscribe_id_ = session_->subscribe(topic_, out);
}

absl::Status MqttProtocol::feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                                ProtocolEvents& events) {
  return session_->feed(in, out, [&](const mqtt::MqttEvent& e) {
    switch (e.kind) {
      case mqtt::MqttEvent::Kind::kConnAck:
        if (e.return_code != 0) {
          events.on_session_error("mqtt_connack_" + std::to_string(e.return_code), false, 0);
          return;
        }
        connack_ = true;
        break;
      case mqtt::MqttEvent::Kind::kSubAck:
        if (e.packet_id != subscribe_id_) return;
        if (e.return_code == 0x80) {
          events.on_session_error("mqtt_subscribe_refused", false, 0);
          return;
        }
        if (connack_ && !ready_) {
          ready_ = true;
          // No broker limit on unacked publishes (the engine's --window applies); ping at half
          // the keepalive (§3.1.2.10: the broker allows one and a half).
          events.on_ready(0, uint32_t{keepalive_s_} * 500);
        }
        break;
      case mqtt::MqttEvent::Kind::kPubAck: {
        auto it = in_flight_.find(e.packet_id);
        if (it == in_flight_.end()) return;
        const uint64_t id = it->second;
        in_flight_.erase(it);
        events.on_ack(id);
        break;
      }
      case mqtt::MqttEvent::Kind::kPublish:
        // No server id in MQTT: the engine dedups on (sender, sequence) from the body.
        events.on_deliver(e.payload, ServerId{});
        break;
      case mqtt::MqttEvent::Kind::kPingResp: events.on_pong(); break;
    }
  });
}

void MqttProtocol::send(const Target& to, uint64_t client_msg_id, std::span<const uint8_t> body,
                        std::vector<uint8_t>& out) {
  const uint16_t packet_id = session_->publish(mqtt_topic_of(to.index), body, out);
  if (packet_id != 0) in_flight_[packet_id] = client_msg_id;
}

void MqttProtocol::ping(std::vector<uint8_t>& out) {
  session_->ping(out);
}

}  // namespace herald::tools::loadgen
