// libFuzzer target for MqttSession::feed (tools/loadgen), the parser of what an MQTT broker
// sends. The first two bytes choose the packet size limit and how the rest is cut into feed()
// pieces; fed whole or in pieces, the session must report the same events, write the same
// PUBACKs and end with the same status.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/loadgen/mqtt_session.h"

namespace {

using herald::tools::mqtt::MqttEvent;
using herald::tools::mqtt::MqttSession;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Outcome {
  std::vector<std::string> events;  // each event flattened, views copied out
  std::vector<uint8_t> out;
  absl::StatusCode code = absl::StatusCode::kOk;
};

MqttSession make_session(uint8_t knobs, std::vector<uint8_t>& out) {
  MqttSession session({.client_id = "fuzz",
                       .clean_session = (knobs & 0x08) == 0,
                       .max_packet_bytes = 16u << (knobs & 0x07)});
  // CONNECT sent, a subscription (id 1) and three publishes (ids 2-4) in flight, so that
  // CONNACK, SUBACK and PUBACK are all expected.
  session.connect(out);
  session.subscribe("t/1", out);
  const uint8_t payload[] = {1, 2, 3};
  for (int i = 0; i < 3; ++i) session.publish("t/2", payload, out);
  out.clear();
  return session;
}

Outcome run(uint8_t knobs, size_t piece_bytes, const uint8_t* data, size_t size) {
  Outcome outcome;
  MqttSession session = make_session(knobs, outcome.out);
  auto on_event = [&](const MqttEvent& e) {
    std::string flat = std::to_string(static_cast<int>(e.kind)) + "/" +
                       std::to_string(e.return_code) + "/" + std::to_string(e.packet_id) + "/";
    flat.append(e.topic);
    flat += "/";
    flat.append(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
    outcome.events.push_back(std::move(flat));
  };
  size_t at = 0;
  do {
    const size_t n = std::min(piece_bytes, size - at);
    const absl::Status status = session.feed(std::span(data + at, n), outcome.out, on_event);
    at += n;
    if (!status.ok()) {
      outcome.code = status.code();
      check(!status.message().empty());
      // A failed session stays failed.
      check(session.feed(std::span(data, size), outcome.out, on_event).code() ==
            absl::StatusCode::kFailedPrecondition);
      break;
    }
  } while (at < size);
  check(session.stats().pubacks_received <= 3);
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t knobs = data[0];
  const size_t piece_bytes = 1 + data[1] % 32;
  data += 2;
  size -= 2;
  const Outcome whole = run(knobs, size == 0 ? 1 : size, data, size);
  const Outcome pieces = run(knobs, piece_bytes, data, size);
  check(whole.code == pieces.code);
  check(whole.events == pieces.events);
  check(whole.out == pieces.out);
  return 0;
}
