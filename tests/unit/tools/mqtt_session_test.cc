// MqttSession (tools/loadgen): packets byte for byte against the MQTT 3.1.1 standard's figures,
// a broker's stream parsed whole and split at every byte, packet ids, in-flight tracking, the
// packet size limit at its edge, and a table of malformed input with the error each must give.
#include "tools/loadgen/mqtt_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace herald::tools::mqtt {
namespace {

using Bytes = std::vector<uint8_t>;
using Kind = MqttEvent::Kind;

Bytes bytes_of(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

// An event copied out of the callback (its views die with the callback).
struct Recorded {
  Kind kind;
  uint8_t return_code;
  uint16_t packet_id;
  std::string topic;
  Bytes payload;
  bool operator==(const Recorded&) const = default;
};

struct Recorder {
  std::vector<Recorded> events;
  std::function<void(const MqttEvent&)> callback() {
    return [this](const MqttEvent& e) {
      events.push_back({e.kind, e.return_code, e.packet_id, std::string(e.topic),
                        Bytes(e.payload.begin(), e.payload.end())});
    };
  }
};

const Bytes kConnAckAccepted = {0x20, 0x02, 0x00, 0x00};

// A session that sent CONNECT and got its CONNACK.
MqttSession connected_session(MqttSessionOptions options = {.client_id = "c1"}) {
  MqttSession session(std::move(options));
  Bytes out;
  session.connect(out);
  Recorder recorder;
  EXPECT_TRUE(session.feed(kConnAckAccepted, out, recorder.callback()).ok());
  return session;
}

// --- Encoding ------------------------------------------------------------------------------

TEST(MqttSessionEncode, ConnectIsByteExact) {
  // §3.1: 0x10, remaining length 14; "MQTT" (Figure 3.2), level 4 (Figure 3.3), flags with only
  // Clean Session (bit 1), keep alive 60 big-endian, then the client id as a string.
  MqttSession session({.client_id = "c1", .keepalive_s = 60});
  Bytes out;
  session.connect(out);
  EXPECT_EQ(out, (Bytes{0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C, 0x00,
                        0x02, 'c', '1'}));

  MqttSession keep({.client_id = "", .keepalive_s = 0x1234, .clean_session = false});
  out.clear();
  keep.connect(out);
  EXPECT_EQ(
      out, (Bytes{0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x12, 0x34, 0x00, 0x00}));
}

TEST(MqttSessionEncode, SubscribeMatchesTheStandardsExample) {
  // §3.8.3 Figure 3.22's first filter: packet id 10, "a/b" at QoS 1; fixed header 0x82
  // (reserved flags 0010, §3.8.1).
  MqttSession session({.client_id = "c"});
  Bytes out;
  for (int i = 1; i < 10; ++i) ASSERT_EQ(session.subscribe("x", out), i);
  out.clear();
  EXPECT_EQ(session.subscribe("a/b", out), 10);
  EXPECT_EQ(out, (Bytes{0x82, 0x08, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01}));
}

TEST(MqttSessionEncode, PublishMatchesTheStandardsExample) {
  // §3.3.2.3 Figure 3.11: topic "a/b", packet id 10; QoS 1, no DUP, no RETAIN is 0x32.
  MqttSession session({.client_id = "c"});
  Bytes out;
  const Bytes payload = bytes_of("hi");
  for (int i = 1; i < 10; ++i) ASSERT_EQ(session.publish("x", payload, out), i);
  out.clear();
  EXPECT_EQ(session.publish("a/b", payload, out), 10);
  EXPECT_EQ(out, (Bytes{0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'}));

  out.clear();
  EXPECT_EQ(session.publish("t", {}, out), 11);  // an empty payload is allowed (§3.3.3)
  EXPECT_EQ(out, (Bytes{0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x0B}));
}

TEST(MqttSessionEncode, PingAndDisconnect) {
  MqttSession session({.client_id = "c"});
  Bytes out;
  session.ping(out);
  session.disconnect(out);
  EXPECT_EQ(out, (Bytes{0xC0, 0x00, 0xE0, 0x00}));  // §3.12, §3.14
  EXPECT_EQ(session.stats().pings_sent, 1u);
}

TEST(MqttSessionEncode, RemainingLengthAtEachByteCountEdge) {
  // §2.2.3 Table 2.4: 127 | 128, 16383 | 16384, 2097151 | 2097152 take 1 | 2, 2 | 3, 3 | 4 bytes.
  struct Case {
    uint32_t remaining;
    Bytes encoded;
  };
  const Case cases[] = {
      {127, {0x7F}},
      {128, {0x80, 0x01}},
      {16'383, {0xFF, 0x7F}},
      {16'384, {0x80, 0x80, 0x01}},
      {2'097'151, {0xFF, 0xFF, 0x7F}},
      {2'097'152, {0x80, 0x80, 0x80, 0x01}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.remaining);
    MqttSession session({.client_id = "c"});
    // Topic "t" (3 bytes with its length) and the packet id (2) come before the payload.
    const Bytes payload(c.remaining - 5, 0xAB);
    Bytes out;
    ASSERT_EQ(session.publish("t", payload, out), 1);
    ASSERT_EQ(out.size(), 1 + c.encoded.size() + c.remaining);
    EXPECT_EQ(Bytes(out.begin() + 1, out.begin() + 1 + c.encoded.size()), c.encoded);

    // The same bytes parse back when they come from a broker.
    MqttSession reader = connected_session(
        {.client_id = "r", .max_packet_bytes = static_cast<uint32_t>(out.size())});
    Recorder recorder;
    Bytes acks;
    ASSERT_TRUE(reader.feed(out, acks, recorder.callback()).ok());
    ASSERT_EQ(recorder.events.size(), 1u);
    EXPECT_EQ(recorder.events[0].payload, payload);
    EXPECT_EQ(acks, (Bytes{0x40, 0x02, 0x00, 0x01}));
  }
}

// --- Packet ids ----------------------------------------------------------------------------

TEST(MqttSessionIds, WrapSkippingZeroAndIdsInFlight) {
  MqttSession session = connected_session();
  Bytes out;
  const Bytes payload = bytes_of("p");
  ASSERT_EQ(session.publish("t", payload, out), 1);  // stays in flight
  for (uint32_t id = 2; id <= 65'535; ++id) {
    ASSERT_EQ(session.publish("t", payload, out), id);
    // Acknowledge each but the first, so that only id 1 stays in flight.
    const Bytes puback = {0x40, 0x02, static_cast<uint8_t>(id >> 8),
                          static_cast<uint8_t>(id & 0xFF)};
    Recorder recorder;
    ASSERT_TRUE(session.feed(puback, out, recorder.callback()).ok());
    out.clear();
  }
  EXPECT_EQ(session.publishes_in_flight(), 1u);
  // After 65535 comes 2: 0 is never an id and 1 is still unacknowledged.
  EXPECT_EQ(session.publish("t", payload, out), 2);
  EXPECT_EQ(session.subscribe("s", out), 3);  // one id space for both
  EXPECT_EQ(session.publishes_in_flight(), 2u);
}

TEST(MqttSessionIds, NoIdFreeReturnsZeroAndWritesNothing) {
  MqttSession session({.client_id = "c"});
  Bytes out;
  const Bytes payload;
  for (uint32_t i = 0; i < 65'534; ++i) ASSERT_NE(session.publish("t", payload, out), 0);
  ASSERT_EQ(session.subscribe("s", out), 65'535);
  const size_t written = out.size();
  EXPECT_EQ(session.publish("t", payload, out), 0);
  EXPECT_EQ(session.subscribe("s", out), 0);
  EXPECT_EQ(out.size(), written);
  EXPECT_EQ(session.stats().publishes_sent, 65'534u);
}

// --- Decoding ------------------------------------------------------------------------------

// What a broker might send a client that connected, subscribed (id 1) and published (id 2).
Bytes broker_script() {
  return concat({
      kConnAckAccepted,
      {0x90, 0x03, 0x00, 0x01, 0x01},                                 // SUBACK id 1, QoS 1
      {0x32, 0x09, 0x00, 0x03, 't', '/', 'x', 0x00, 0x07, 'h', 'i'},  // PUBLISH QoS 1 id 7
      {0x40, 0x02, 0x00, 0x02},                                       // PUBACK id 2
      {0x30, 0x06, 0x00, 0x01, 'q', 'z', 'e', 'r'},                   // PUBLISH QoS 0
      {0x3B, 0x07, 0x00, 0x02, 0xC3, 0xA9, 0x01, 0x00, '!'},  // DUP, QoS 1, RETAIN; "é", id 256
      {0xD0, 0x00},                                           // PINGRESP
  });
}

std::vector<Recorded> expected_events() {
  return {
      {Kind::kConnAck, 0, 0, "", {}},
      {Kind::kSubAck, 1, 1, "", {}},
      {Kind::kPublish, 0, 7, "t/x", bytes_of("hi")},
      {Kind::kPubAck, 0, 2, "", {}},
      {Kind::kPublish, 0, 0, "q", bytes_of("zer")},
      {Kind::kPublish, 0, 256, "\xC3\xA9", bytes_of("!")},
      {Kind::kPingResp, 0, 0, "", {}},
  };
}

// The client half of the script, and the session after it.
MqttSession scripted_client(Bytes& out) {
  MqttSession session({.client_id = "c1"});
  session.connect(out);
  EXPECT_EQ(session.subscribe("t/x", out), 1);
  EXPECT_EQ(session.publish("t/y", bytes_of("yo"), out), 2);
  out.clear();
  return session;
}

const Bytes kExpectedAcks = {0x40, 0x02, 0x00, 0x07, 0x40, 0x02, 0x01, 0x00};

TEST(MqttSessionDecode, WholeStream) {
  Bytes out;
  MqttSession session = scripted_client(out);
  Recorder recorder;
  ASSERT_TRUE(session.feed(broker_script(), out, recorder.callback()).ok());
  EXPECT_EQ(recorder.events, expected_events());
  EXPECT_EQ(out, kExpectedAcks);  // a PUBACK for each QoS 1 PUBLISH, none for QoS 0
  EXPECT_TRUE(session.connack_received());
  EXPECT_EQ(session.publishes_in_flight(), 0u);
  const MqttSessionStats& stats = session.stats();
  EXPECT_EQ(stats.publishes_received, 3u);
  EXPECT_EQ(stats.publishes_received_dup, 1u);
  EXPECT_EQ(stats.pubacks_sent, 2u);
  EXPECT_EQ(stats.pubacks_received, 1u);
  EXPECT_EQ(stats.subacks_received, 1u);
  EXPECT_EQ(stats.pingresps_received, 1u);
  EXPECT_EQ(stats.packets_received, 7u);
  EXPECT_EQ(stats.bytes_received, broker_script().size());
}

TEST(MqttSessionDecode, SplitAtEveryByteBoundary) {
  const Bytes script = broker_script();
  for (size_t cut = 0; cut <= script.size(); ++cut) {
    SCOPED_TRACE(cut);
    Bytes out;
    MqttSession session = scripted_client(out);
    Recorder recorder;
    ASSERT_TRUE(session.feed(std::span(script).first(cut), out, recorder.callback()).ok());
    ASSERT_TRUE(session.feed(std::span(script).subspan(cut), out, recorder.callback()).ok());
    EXPECT_EQ(recorder.events, expected_events());
    EXPECT_EQ(out, kExpectedAcks);
  }
}

TEST(MqttSessionDecode, OneByteAtATime) {
  const Bytes script = broker_script();
  Bytes out;
  MqttSession session = scripted_client(out);
  Recorder recorder;
  for (uint8_t byte : script) {
    ASSERT_TRUE(session.feed(std::span(&byte, 1), out, recorder.callback()).ok());
  }
  EXPECT_EQ(recorder.events, expected_events());
  EXPECT_EQ(out, kExpectedAcks);
}

TEST(MqttSessionDecode, DuplicateAndUnknownAcksAreCountedNotReported) {
  Bytes out;
  MqttSession session = scripted_client(out);
  Recorder recorder;
  const Bytes stream = concat({
      kConnAckAccepted,
      {0x40, 0x02, 0x00, 0x02},        // PUBACK id 2: ours
      {0x40, 0x02, 0x00, 0x02},        // again: a duplicate
      {0x40, 0x02, 0x00, 0x63},        // id 99: never sent
      {0x90, 0x03, 0x00, 0x01, 0x80},  // SUBACK id 1: refused
      {0x90, 0x03, 0x00, 0x01, 0x01},  // again
  });
  ASSERT_TRUE(session.feed(stream, out, recorder.callback()).ok());
  EXPECT_EQ(recorder.events, (std::vector<Recorded>{{Kind::kConnAck, 0, 0, "", {}},
                                                    {Kind::kPubAck, 0, 2, "", {}},
                                                    {Kind::kSubAck, 0x80, 1, "", {}}}));
  EXPECT_EQ(session.stats().pubacks_received, 1u);
  EXPECT_EQ(session.stats().pubacks_unknown, 2u);
  EXPECT_EQ(session.stats().subacks_refused, 1u);
  EXPECT_EQ(session.stats().subacks_unknown, 1u);
  EXPECT_TRUE(out.empty());
}

TEST(MqttSessionDecode, CallbackMayPublish) {
  MqttSession session = connected_session();
  Bytes out;
  uint16_t reply_id = 0;
  const Bytes publish = {0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x05, 'x'};
  ASSERT_TRUE(session
                  .feed(publish, out,
                        [&](const MqttEvent& e) {
                          if (e.kind == Kind::kPublish) reply_id = session.publish("b", {}, out);
                        })
                  .ok());
  EXPECT_EQ(reply_id, 1);
  // The PUBACK (written before the callback), then the reply.
  EXPECT_EQ(out, (Bytes{0x40, 0x02, 0x00, 0x05, 0x32, 0x05, 0x00, 0x01, 'b', 0x00, 0x01}));
}

TEST(MqttSessionDecode, ConnAckRefusedGivesTheEventThenAnError) {
  const struct {
    uint8_t code;
    absl::StatusCode status;
  } cases[] = {{1, absl::StatusCode::kFailedPrecondition},
               {2, absl::StatusCode::kInvalidArgument},
               {3, absl::StatusCode::kUnavailable},
               {4, absl::StatusCode::kUnauthenticated},
               {5, absl::StatusCode::kPermissionDenied}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.code);
    MqttSession session({.client_id = "c"});
    Bytes out;
    session.connect(out);
    Recorder recorder;
    const absl::Status status =
        session.feed(Bytes{0x20, 0x02, 0x00, c.code}, out, recorder.callback());
    EXPECT_EQ(status.code(), c.status);
    EXPECT_NE(status.message().find("CONNACK refused"), std::string_view::npos);
    ASSERT_EQ(recorder.events.size(), 1u);
    EXPECT_EQ(recorder.events[0], (Recorded{Kind::kConnAck, c.code, 0, "", {}}));
    EXPECT_FALSE(session.connack_received());
    // The session stays failed.
    EXPECT_EQ(session.feed(Bytes{0xD0, 0x00}, out, recorder.callback()).code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(MqttSessionDecode, MaxPacketBytesAtItsEdge) {
  // A PUBLISH of exactly max_packet_bytes (header included) passes; one byte more fails as soon
  // as its length is known, with no body sent.
  const uint32_t max_bytes = 200;
  const Bytes payload(max_bytes - 6, 'p');  // 0x30, 2 length bytes, topic "t" (3 bytes)
  Bytes packet = {0x30,
                  static_cast<uint8_t>(0x80 | ((max_bytes - 3) & 0x7F)),
                  static_cast<uint8_t>((max_bytes - 3) >> 7),
                  0x00,
                  0x01,
                  't'};
  packet.insert(packet.end(), payload.begin(), payload.end());
  ASSERT_EQ(packet.size(), max_bytes);
  MqttSession fits = connected_session({.client_id = "c", .max_packet_bytes = max_bytes});
  Bytes out;
  Recorder recorder;
  EXPECT_TRUE(fits.feed(packet, out, recorder.callback()).ok());
  EXPECT_EQ(recorder.events.size(), 1u);

  MqttSession over = connected_session({.client_id = "c", .max_packet_bytes = max_bytes - 1});
  const absl::Status status = over.feed(std::span(packet).first(3), out, recorder.callback());
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("over max_packet_bytes 199"), std::string_view::npos) << status;
}

// Every malformed or unexpected input: the status and a piece of its message.
TEST(MqttSessionDecode, ErrorsTable) {
  struct Case {
    const char* name;
    Bytes stream;
    absl::StatusCode code;
    const char* message;
    bool connect_first = true;
  };
  const Bytes a = kConnAckAccepted;
  const Case cases[] = {
      {"reserved type 0", {0x00, 0x00}, absl::StatusCode::kDataLoss, "reserved type 0"},
      {"reserved type 15", concat({a, {0xF0, 0x00}}), absl::StatusCode::kDataLoss,
       "reserved type 15"},
      {"CONNACK reserved flags",
       {0x21, 0x02, 0x00, 0x00},
       absl::StatusCode::kDataLoss,
       "reserved flags 0x1"},
      {"PUBACK reserved flags", concat({a, {0x42, 0x02, 0x00, 0x01}}), absl::StatusCode::kDataLoss,
       "PUBACK with reserved flags"},
      {"SUBACK reserved flags", concat({a, {0x98, 0x03, 0x00, 0x01, 0x01}}),
       absl::StatusCode::kDataLoss, "SUBACK with reserved flags"},
      {"PINGRESP reserved flags", concat({a, {0xD4, 0x00}}), absl::StatusCode::kDataLoss,
       "PINGRESP with reserved flags"},
      {"PUBLISH QoS 3", concat({a, {0x36, 0x00}}), absl::StatusCode::kDataLoss, "both QoS bits"},
      {"PUBLISH QoS 0 with DUP", concat({a, {0x38, 0x00}}), absl::StatusCode::kDataLoss, "DUP"},
      {"PUBLISH QoS 2", concat({a, {0x34, 0x00}}), absl::StatusCode::kInvalidArgument, "QoS 2"},
      {"CONNECT from the broker",
       {0x10, 0x00},
       absl::StatusCode::kInvalidArgument,
       "unexpected CONNECT"},
      {"PUBREL", concat({a, {0x62, 0x02, 0x00, 0x01}}), absl::StatusCode::kInvalidArgument,
       "unexpected PUBREL"},
      {"UNSUBACK", concat({a, {0xB0, 0x02, 0x00, 0x01}}), absl::StatusCode::kInvalidArgument,
       "unexpected UNSUBACK"},
      {"SUBSCRIBE", concat({a, {0x82, 0x00}}), absl::StatusCode::kInvalidArgument,
       "unexpected SUBSCRIBE"},
      {"PINGREQ", concat({a, {0xC0, 0x00}}), absl::StatusCode::kInvalidArgument,
       "unexpected PINGREQ"},
      {"DISCONNECT", concat({a, {0xE0, 0x00}}), absl::StatusCode::kInvalidArgument,
       "unexpected DISCONNECT"},
      {"packet before CONNACK",
       {0xD0, 0x00},
       absl::StatusCode::kInvalidArgument,
       "PINGRESP before CONNACK"},
      {"second CONNACK", concat({a, a}), absl::StatusCode::kInvalidArgument, "second CONNACK"},
      {"CONNACK before CONNECT", a, absl::StatusCode::kInvalidArgument, "before any CONNECT",
       false},
      {"CONNACK too long",
       {0x20, 0x03, 0x00, 0x00, 0x00},
       absl::StatusCode::kDataLoss,
       "CONNACK remaining length 3"},
      {"CONNACK too short",
       {0x20, 0x01, 0x00},
       absl::StatusCode::kDataLoss,
       "CONNACK remaining length 1"},
      {"CONNACK reserved ack flags",
       {0x20, 0x02, 0x02, 0x00},
       absl::StatusCode::kDataLoss,
       "acknowledge flags 0x2"},
      {"CONNACK reserved code",
       {0x20, 0x02, 0x00, 0x06},
       absl::StatusCode::kDataLoss,
       "return code 6 is reserved"},
      {"CONNACK session present on a clean session",
       {0x20, 0x02, 0x01, 0x00},
       absl::StatusCode::kDataLoss,
       "session present"},
      {"remaining length of 5 bytes", concat({a, {0x30, 0x80, 0x80, 0x80, 0x80, 0x01}}),
       absl::StatusCode::kDataLoss, "longer than 4 bytes"},
      {"remaining length of 256 MiB", concat({a, {0x30, 0xFF, 0xFF, 0xFF, 0x7F}}),
       absl::StatusCode::kResourceExhausted, "of 268435460 bytes"},
      {"PUBLISH without topic length", concat({a, {0x30, 0x01, 0x00}}), absl::StatusCode::kDataLoss,
       "no topic length"},
      {"PUBLISH topic overruns", concat({a, {0x30, 0x03, 0x00, 0x02, 'a'}}),
       absl::StatusCode::kDataLoss, "overruns"},
      {"PUBLISH QoS 1 without id", concat({a, {0x32, 0x04, 0x00, 0x01, 'a', 0x00}}),
       absl::StatusCode::kDataLoss, "overruns"},
      {"PUBLISH empty topic", concat({a, {0x30, 0x02, 0x00, 0x00}}), absl::StatusCode::kDataLoss,
       "empty topic"},
      {"PUBLISH id 0", concat({a, {0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00}}),
       absl::StatusCode::kDataLoss, "packet id 0"},
      {"PUBLISH wildcard", concat({a, {0x30, 0x05, 0x00, 0x03, 'a', '/', '#'}}),
       absl::StatusCode::kDataLoss, "wildcard"},
      {"PUBLISH U+0000", concat({a, {0x30, 0x03, 0x00, 0x01, 0x00}}), absl::StatusCode::kDataLoss,
       "UTF-8"},
      {"PUBLISH overlong UTF-8", concat({a, {0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF}}),
       absl::StatusCode::kDataLoss, "UTF-8"},
      {"PUBLISH surrogate", concat({a, {0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80}}),
       absl::StatusCode::kDataLoss, "UTF-8"},
      {"PUBLISH truncated UTF-8", concat({a, {0x30, 0x03, 0x00, 0x01, 0xE2}}),
       absl::StatusCode::kDataLoss, "UTF-8"},
      {"PUBACK too long", concat({a, {0x40, 0x03, 0x00, 0x01, 0x00}}), absl::StatusCode::kDataLoss,
       "PUBACK remaining length 3"},
      {"PUBACK id 0", concat({a, {0x40, 0x02, 0x00, 0x00}}), absl::StatusCode::kDataLoss,
       "packet id 0"},
      {"SUBACK two codes", concat({a, {0x90, 0x04, 0x00, 0x01, 0x01, 0x01}}),
       absl::StatusCode::kDataLoss, "SUBACK remaining length 4"},
      {"SUBACK id 0", concat({a, {0x90, 0x03, 0x00, 0x00, 0x01}}), absl::StatusCode::kDataLoss,
       "packet id 0"},
      {"SUBACK reserved code", concat({a, {0x90, 0x03, 0x00, 0x01, 0x03}}),
       absl::StatusCode::kDataLoss, "0x3 is reserved"},
      {"SUBACK grants QoS 2", concat({a, {0x90, 0x03, 0x00, 0x01, 0x02}}),
       absl::StatusCode::kInvalidArgument, "QoS 2"},
      {"PINGRESP with a body", concat({a, {0xD0, 0x01, 0x00}}), absl::StatusCode::kDataLoss,
       "PINGRESP remaining length 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    MqttSession session({.client_id = "c"});
    Bytes out;
    if (c.connect_first) session.connect(out);
    out.clear();
    Recorder recorder;
    const absl::Status status = session.feed(c.stream, out, recorder.callback());
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_NE(status.message().find(c.message), std::string_view::npos) << status;
    // Whatever came before the bad packet was handled; nothing after it.
    EXPECT_LE(recorder.events.size(), 1u);
    EXPECT_EQ(session.feed(kConnAckAccepted, out, recorder.callback()).code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace herald::tools::mqtt
