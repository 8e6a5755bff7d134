// MQTT 3.1.1 client packets (encoding and a streaming parser for what a broker sends); section
// numbers refer to the OASIS MQTT Version 3.1.1 standard.
#include "tools/loadgen/mqtt_session.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "platform/assert/assert.h"

namespace herald::tools::mqtt {
namespace {

// §2.2.1 Table 2.1.
enum PacketType : uint8_t {
  kConnect = 1,
  kConnAck = 2,
  kPublish = 3,
  kPubAck = 4,
  kPubRec = 5,
  kPubRel = 6,
  kPubComp = 7,
  kSubscribe = 8,
  kSubAck = 9,
  kUnsubscribe = 10,
  kUnsubAck = 11,
  kPingReq = 12,
  kPingResp = 13,
  kDisconnect = 14,
};

const char* type_name(uint8_t type) {
  static constexpr const char* kNames[16] = {
      "reserved type 0", "CONNECT",  "CONNACK",    "PUBLISH",         "PUBACK",      "PUBREC",
      "PUBREL",          "PUBCOMP",  "SUBSCRIBE",  "SUBACK",          "UNSUBSCRIBE", "UNSUBACK",
      "PINGREQ",         "PINGRESP", "DISCONNECT", "reserved type 15"};
  return kNames[type & 0x0F];
}

// §2.2.3: four length bytes of seven bits each.
constexpr uint32_t kMaxRemainingLength = 268'435'455;
constexpr size_t kMaxRemainingLengthBytes = 4;
constexpr size_t kMaxStringBytes = 65'535;  // §1.5.3: a two-byte length prefix
constexpr uint8_t kQos1 = 1;
// §3.3.1: 0011 DUP=0 QoS=01 RETAIN=0.
constexpr uint8_t kPublishQos1Header = (kPublish << 4) | (kQos1 << 1);
constexpr uint8_t kPublishDupFlag = 0x08;
constexpr uint8_t kSubAckFailure = 0x80;      // §3.9.3
constexpr uint8_t kMaxConnAckReturnCode = 5;  // §3.2.2.3: 6-255 are reserved

void put_u8(std::vector<uint8_t>& out, uint8_t v) {
  out.push_back(v);
}

// §1.5.2: big-endian.
void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v & 0xFF));
}

// §1.5.3: a two-byte length, then the bytes.
void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put_u16(out, static_cast<uint16_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// §2.2.3: seven bits a byte, least significant first, the top bit saying more follow.
void put_remaining_length(std::vector<uint8_t>& out, uint32_t length) {
  HERALD_CHECK(length <= kMaxRemainingLength, "MQTT packet larger than 256 MiB");
  do {
    uint8_t byte = length & 0x7F;
    length >>= 7;
    if (length > 0) byte |= 0x80;
    out.push_back(byte);
  } while (length > 0);
}

uint16_t get_u16(std::span<const uint8_t> bytes, size_t at) {
  return static_cast<uint16_t>((bytes[at] << 8) | bytes[at + 1]);
}

// §1.5.3: well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF) without U+0000 [MQTT-1.5.3-1, -2].
bool valid_mqtt_utf8(std::string_view s) {
  static constexpr uint32_t kMinCodePoint[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    uint32_t code_point;
    size_t length;
    if ((c & 0xE0) == 0xC0) {
      code_point = c & 0x1F;
      length = 2;
    } else if ((c & 0xF0) == 0xE0) {
      code_point = c & 0x0F;
      length = 3;
    } else if ((c & 0xF8) == 0xF0) {
      code_point = c & 0x07;
      length = 4;
    } else {
      return false;
    }
    if (s.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<uint8_t>(s[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < kMinCodePoint[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

// §3.2.2.3 Table 3.1, each refusal as the closest status code.
absl::Status connack_refusal(uint8_t code) {
  switch (code) {
    case 1:
      return absl::FailedPreconditionError(
          "CONNACK refused the connection: 1, unacceptable protocol version");
    case 2:
      return absl::InvalidArgumentError("CONNACK refused the connection: 2, identifier rejected");
    case 3: return absl::UnavailableError("CONNACK refused the connection: 3, server unavailable");
    case 4:
      return absl::UnauthenticatedError(
          "CONNACK refused the connection: 4, bad user name or password");
    default:
      return absl::PermissionDeniedError("CONNACK refused the connection: 5, not authorized");
  }
}

// Checks the first byte of a packet as soon as it arrives: the type must be one a QoS 1 client
// receives, with the flags §2.2.2 Table 2.2 fixes for it.
absl::Status check_fixed_header(uint8_t header) {
  const uint8_t type = header >> 4;
  const uint8_t flags = header & 0x0F;
  switch (type) {
    case kPublish: {
      const uint8_t qos = (flags >> 1) & 0x03;
      if (qos == 3) return absl::DataLossError("PUBLISH with both QoS bits set (§3.3.1.2)");
      if (qos == 0 && (flags & kPublishDupFlag) != 0) {
        return absl::DataLossError("QoS 0 PUBLISH with the DUP flag set (§3.3.1.1)");
      }
      if (qos == 2) {
        // §3.8.4: the broker delivers at most at the QoS granted, and we ask for 1.
        return absl::InvalidArgumentError("PUBLISH with QoS 2 on a QoS 1 subscription");
      }
      return absl::OkStatus();
    }
    case kConnAck:
    case kPubAck:
    case kSubAck:
    case kPingResp:
      if (flags != 0) {
        return absl::DataLossError(
            absl::StrFormat("%s with reserved flags 0x%x set (§2.2.2)", type_name(type), flags));
      }
      return absl::OkStatus();
    case 0:
    case 15: return absl::DataLossError(absl::StrFormat("packet of %s (§2.2.1)", type_name(type)));
    default:
      // A client sending only QoS 1 and never unsubscribing receives none of these.
      return absl::InvalidArgumentError(
          absl::StrFormat("unexpected %s from the broker", type_name(type)));
  }
}

}  // namespace

MqttSession::MqttSession(MqttSessionOptions options) : options_(std::move(options)) {
  HERALD_CHECK(options_.client_id.size() <= kMaxStringBytes, "MQTT client id over 65535 bytes");
}

void MqttSession::connect(std::vector<uint8_t>& out) {
  // §3.1: fixed header, then protocol name "MQTT", level 4, connect flags, keep alive, and the
  // client identifier as the whole payload (no will, user name or password).
  static constexpr std::string_view kProtocolName = "MQTT";
  static constexpr uint8_t kProtocolLevel = 4;  // §3.1.2.2: 3.1.1
  static constexpr uint8_t kCleanSessionFlag = 0x02;
  const uint32_t remaining =
      2 + kProtocolName.size() + 1 + 1 + 2 + 2 + static_cast<uint32_t>(options_.client_id.size());
  put_u8(out, kConnect << 4);
  put_remaining_length(out, remaining);
  put_string(out, kProtocolName);
  put_u8(out, kProtocolLevel);
  put_u8(out, options_.clean_session ? kCleanSessionFlag : 0);
  put_u16(out, options_.keepalive_s);
  put_string(out, options_.client_id);
  connect_sent_ = true;
}

uint16_t MqttSession::take_packet_id() {
  constexpr size_t kPacketIds = 65'535;  // 1..65535 (§2.3.1: 0 is not an id)
  if (publishes_in_flight_.size() + subscribes_in_flight_.size() >= kPacketIds) return 0;
  for (;;) {
    ++next_packet_id_;                              // wraps from 65535 to 0 ...
    if (next_packet_id_ == 0) next_packet_id_ = 1;  // ... which is skipped
    if (!publishes_in_flight_.contains(next_packet_id_) &&
        !subscribes_in_flight_.contains(next_packet_id_)) {
      return next_packet_id_;
    }
  }
}

uint16_t MqttSession::subscribe(std::string_view topic, std::vector<uint8_t>& out) {
  // §3.8.3 [MQTT-3.8.3-3]: at least one topic filter, which is at least one character.
  HERALD_CHECK(!topic.empty() && topic.size() <= kMaxStringBytes,
               "MQTT topic filter empty or over 65535 bytes");
  const uint16_t id = take_packet_id();
  if (id == 0) return 0;
  // §3.8.1: SUBSCRIBE's reserved flags are 0010.
  put_u8(out, (kSubscribe << 4) | 0x02);
  put_remaining_length(out, 2 + 2 + static_cast<uint32_t>(topic.size()) + 1);
  put_u16(out, id);
  put_string(out, topic);
  put_u8(out, kQos1);  // requested QoS
  subscribes_in_flight_.insert(id);
  ++stats_.subscribes_sent;
  return id;
}

uint16_t MqttSession::publish(std::string_view topic, std::span<const uint8_t> payload,
                              std::vector<uint8_t>& out) {
  // §3.3.2 [MQTT-3.3.2-2], §4.7.3: a topic name has at least one character and no wildcard.
  HERALD_CHECK(!topic.empty() && topic.size() <= kMaxStringBytes,
               "MQTT topic name empty or over 65535 bytes");
  HERALD_CHECK(topic.find_first_of("+#") == std::string_view::npos,
               "MQTT topic name with a wildcard");
  const uint64_t remaining = 2 + topic.size() + 2 + payload.size();
  HERALD_CHECK(remaining <= kMaxRemainingLength, "MQTT PUBLISH larger than 256 MiB");
  const uint16_t id = take_packet_id();
  if (id == 0) return 0;
  put_u8(out, kPublishQos1Header);
  put_remaining_length(out, static_cast<uint32_t>(remaining));
  put_string(out, topic);
  put_u16(out, id);
  out.insert(out.end(), payload.begin(), payload.end());
  publishes_in_flight_.insert(id);
  ++stats_.publishes_sent;
  return id;
}

void MqttSession::ping(std::vector<uint8_t>& out) {
  put_u8(out, kPingReq << 4);  // §3.12
  put_u8(out, 0);
  ++stats_.pings_sent;
}

void MqttSession::disconnect(std::vector<uint8_t>& out) {
  put_u8(out, kDisconnect << 4);  // §3.14
  put_u8(out, 0);
}

absl::Status MqttSession::fail(absl::Status status) {
  failed_ = status;
  pending_.clear();
  pending_.shrink_to_fit();
  return status;
}

absl::Status MqttSession::feed(std::span<const uint8_t> in, std::vector<uint8_t>& out,
                               const std::function<void(const MqttEvent&)>& on_event) {
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("MQTT session failed earlier: %s", std::string(failed_.message())));
  }
  stats_.bytes_received += in.size();
  size_t consumed = 0;
  if (pending_.empty()) {
    // The common case: whole packets parsed where they lie, only a partial tail copied.
    if (absl::Status status = parse(in, consumed, out, on_event); !status.ok()) {
      return fail(std::move(status));
    }
    pending_.assign(in.begin() + consumed, in.end());
  } else {
    pending_.insert(pending_.end(), in.begin(), in.end());
    if (absl::Status status = parse(pending_, consumed, out, on_event); !status.ok()) {
      return fail(std::move(status));
    }
    pending_.erase(pending_.begin(), pending_.begin() + consumed);
  }
  return absl::OkStatus();
}

absl::Status MqttSession::parse(std::span<const uint8_t> bytes, size_t& consumed,
                                std::vector<uint8_t>& out,
                                const std::function<void(const MqttEvent&)>& on_event) {
  consumed = 0;
  while (consumed < bytes.size()) {
    const std::span<const uint8_t> rest = bytes.subspan(consumed);
    const uint8_t header = rest[0];
    if (absl::Status status = check_fixed_header(header); !status.ok()) return status;
    // §2.2.3: the remaining length, in one to four bytes.
    uint32_t remaining = 0;
    size_t header_bytes = 0;
    for (size_t k = 0;; ++k) {
      if (k == kMaxRemainingLengthBytes) {
        return absl::DataLossError("remaining length longer than 4 bytes (§2.2.3)");
      }
      if (1 + k >= rest.size()) return absl::OkStatus();  // the rest comes later
      const uint8_t byte = rest[1 + k];
      remaining |= static_cast<uint32_t>(byte & 0x7F) << (7 * k);
      if ((byte & 0x80) == 0) {
        header_bytes = 2 + k;
        break;
      }
    }
    const uint64_t packet_bytes = header_bytes + static_cast<uint64_t>(remaining);
    if (packet_bytes > options_.max_packet_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("%s of %d bytes is over max_packet_bytes %d", type_name(header >> 4),
                          packet_bytes, options_.max_packet_bytes));
    }
    if (rest.size() < packet_bytes) return absl::OkStatus();
    ++stats_.packets_received;
    if (absl::Status status =
            handle_packet(header, rest.subspan(header_bytes, remaining), out, on_event);
        !status.ok()) {
      return status;
    }
    consumed += packet_bytes;
  }
  return absl::OkStatus();
}

absl::Status MqttSession::handle_packet(uint8_t header, std::span<const uint8_t> body,
                                        std::vector<uint8_t>& out,
                                        const std::function<void(const MqttEvent&)>& on_event) {
  const uint8_t type = header >> 4;
  if (type == kConnAck) {
    if (!connect_sent_) return absl::InvalidArgumentError("CONNACK before any CONNECT was sent");
    if (connack_received_) return absl::InvalidArgumentError("a second CONNACK (§3.2)");
  } else if (!connack_received_) {
    // §3.2: the first packet from the server is CONNACK.
    return absl::InvalidArgumentError(absl::StrFormat("%s before CONNACK (§3.2)", type_name(type)));
  }
  MqttEvent event{};
  switch (type) {
    case kConnAck: {
      if (body.size() != 2) {
        return absl::DataLossError(
            absl::StrFormat("CONNACK remaining length %d, not 2 (§3.2.1)", body.size()));
      }
      const uint8_t ack_flags = body[0];
      const uint8_t code = body[1];
      if ((ack_flags & 0xFE) != 0) {
        return absl::DataLossError(
            absl::StrFormat("CONNACK with reserved acknowledge flags 0x%x (§3.2.2.1)", ack_flags));
      }
      if (code > kMaxConnAckReturnCode) {
        return absl::DataLossError(
            absl::StrFormat("CONNACK return code %d is reserved (§3.2.2.3)", code));
      }
      const bool session_present = (ack_flags & 0x01) != 0;
      // [MQTT-3.2.2-1]: no session survives a clean start; [MQTT-3.2.2-4]: nor a refusal.
      if (session_present && (options_.clean_session || code != 0)) {
        return absl::DataLossError(absl::StrFormat(
            "CONNACK with session present after a clean session or with return code %d", code));
      }
      connack_received_ = code == 0;
      event.kind = MqttEvent::Kind::kConnAck;
      event.return_code = code;
      on_event(event);
      if (code != 0) return connack_refusal(code);
      return absl::OkStatus();
    }
    case kPublish: {
      // §3.3.2: topic name, then the packet id when QoS > 0; the rest is the payload.
      const uint8_t qos = (header >> 1) & 0x03;
      if (body.size() < 2) {
        return absl::DataLossError(
            absl::StrFormat("PUBLISH of %d bytes has no topic length", body.size()));
      }
      const size_t topic_bytes = get_u16(body, 0);
      const size_t id_bytes = qos > 0 ? 2 : 0;
      if (2 + topic_bytes + id_bytes > body.size()) {
        return absl::DataLossError(absl::StrFormat(
            "PUBLISH topic length %d overruns its remaining length %d", topic_bytes, body.size()));
      }
      const std::string_view topic(reinterpret_cast<const char*>(body.data()) + 2, topic_bytes);
      if (topic.empty()) return absl::DataLossError("PUBLISH with an empty topic name (§4.7.3)");
      if (!valid_mqtt_utf8(topic)) {
        return absl::DataLossError("PUBLISH topic name is not valid UTF-8 (§1.5.3)");
      }
      if (topic.find_first_of("+#") != std::string_view::npos) {
        return absl::DataLossError("PUBLISH topic name with a wildcard (§3.3.2.1)");
      }
      uint16_t id = 0;
      if (qos > 0) {
        id = get_u16(body, 2 + topic_bytes);
        if (id == 0) return absl::DataLossError("PUBLISH with packet id 0 (§2.3.1)");
      }
      ++stats_.publishes_received;
      if ((header & kPublishDupFlag) != 0) ++stats_.publishes_received_dup;
      if (qos == kQos1) {
        // §4.3.2: acknowledge each QoS 1 delivery with a PUBACK carrying its id.
        put_u8(out, kPubAck << 4);
        put_u8(out, 2);
        put_u16(out, id);
        ++stats_.pubacks_sent;
      }
      event.kind = MqttEvent::Kind::kPublish;
      event.packet_id = id;
      event.topic = topic;
      event.payload = body.subspan(2 + topic_bytes + id_bytes);
      on_event(event);
      return absl::OkStatus();
    }
    case kPubAck: {
      if (body.size() != 2) {
        return absl::DataLossError(
            absl::StrFormat("PUBACK remaining length %d, not 2 (§3.4.1)", body.size()));
      }
      const uint16_t id = get_u16(body, 0);
      if (id == 0) return absl::DataLossError("PUBACK with packet id 0 (§2.3.1)");
      // A PUBACK for nothing in flight (a duplicate, or an id never used) is the broker's
      // mistake, not a reason to drop the connection: counted, and not reported as an ack.
      if (publishes_in_flight_.erase(id) == 0) {
        ++stats_.pubacks_unknown;
        return absl::OkStatus();
      }
      ++stats_.pubacks_received;
      event.kind = MqttEvent::Kind::kPubAck;
      event.packet_id = id;
      on_event(event);
      return absl::OkStatus();
    }
    case kSubAck: {
      // §3.9: packet id and one return code per topic filter; we send one filter each time.
      if (body.size() != 3) {
        return absl::DataLossError(absl::StrFormat(
            "SUBACK remaining length %d, not 3 for a one-filter SUBSCRIBE (§3.9)", body.size()));
      }
      const uint16_t id = get_u16(body, 0);
      const uint8_t code = body[2];
      if (id == 0) return absl::DataLossError("SUBACK with packet id 0 (§2.3.1)");
      if (code == 2) {
        return absl::InvalidArgumentError("SUBACK grants QoS 2 where QoS 1 was asked (§3.8.4)");
      }
      if (code > 2 && code != kSubAckFailure) {
        return absl::DataLossError(
            absl::StrFormat("SUBACK return code 0x%x is reserved (§3.9.3)", code));
      }
      if (subscribes_in_flight_.erase(id) == 0) {
        ++stats_.subacks_unknown;
        return absl::OkStatus();
      }
      ++stats_.subacks_received;
      // A refused subscription leaves the connection usable: the caller sees the 0x80.
      if (code == kSubAckFailure) ++stats_.subacks_refused;
      event.kind = MqttEvent::Kind::kSubAck;
      event.packet_id = id;
      event.return_code = code;
      on_event(event);
      return absl::OkStatus();
    }
    case kPingResp:
      if (!body.empty()) {
        return absl::DataLossError(
            absl::StrFormat("PINGRESP remaining length %d, not 0 (§3.13)", body.size()));
      }
      ++stats_.pingresps_received;
      event.kind = MqttEvent::Kind::kPingResp;
      on_event(event);
      return absl::OkStatus();
    default:
      // check_fixed_header() let only the types above through.
      HERALD_CHECK(false, "unchecked MQTT packet type");
      return absl::InternalError("unreachable");
  }
}

}  // namespace herald::tools::mqtt
