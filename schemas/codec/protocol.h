// Protocol constants and the pure helpers around them: version negotiation (Hello/HelloOk) and
// the layout of a ServerMsgId (documented in schemas/wire.fbs and docs/PROTOCOL.md).
#pragma once

#include <algorithm>
#include <cstdint>

#include "schemas/wire_generated.h"

namespace herald::codec {

// Versions of the client protocol this build speaks. Version 1 is wire.fbs as first released;
// a version is added when a frame type or a behaviour a peer must know about is added.
inline constexpr uint16_t kProtocolVersionMin = 1;
inline constexpr uint16_t kProtocolVersionMax = 1;
static_assert(kProtocolVersionMin >= 1 && kProtocolVersionMin <= kProtocolVersionMax);

// The highest version inside both ranges, or 0 when they do not overlap (the server then sends
// Error{VersionUnsupported} and closes). An inverted client range never overlaps.
[[nodiscard]] constexpr uint16_t negotiate_version(uint16_t client_min, uint16_t client_max,
                                                   uint16_t server_min = kProtocolVersionMin,
                                                   uint16_t server_max = kProtocolVersionMax) {
  if (client_min > client_max || server_min > server_max) return 0;
  const uint16_t low = std::max(client_min, server_min);
  const uint16_t high = std::min(client_max, server_max);
  return low <= high && high != 0 ? high : 0;
}

// ServerMsgId layout: hi = unix_time_ms << 16 | node_id; lo = worker << 56 | sequence.
inline constexpr int kServerMsgTimeBits = 48;
inline constexpr int kServerMsgSequenceBits = 56;
inline constexpr uint64_t kServerMsgTimeMaxMs = (uint64_t{1} << kServerMsgTimeBits) - 1;
inline constexpr uint64_t kServerMsgSequenceMax = (uint64_t{1} << kServerMsgSequenceBits) - 1;

// Time beyond 48 bits and sequences beyond 56 bits are truncated to their field; the issuer
// (a dataplane worker) never gets there: 2^48 ms is year 10889, 2^56 ids is centuries at any rate
// one worker can reach.
[[nodiscard]] inline wire::ServerMsgId make_server_msg_id(uint16_t node_id, uint64_t unix_time_ms,
                                                          uint8_t worker, uint64_t sequence) {
  return wire::ServerMsgId(
      (unix_time_ms & kServerMsgTimeMaxMs) << 16 | node_id,
      uint64_t{worker} << kServerMsgSequenceBits | (sequence & kServerMsgSequenceMax));
}

[[nodiscard]] inline uint16_t server_msg_node_id(const wire::ServerMsgId& id) {
  return static_cast<uint16_t>(id.hi() & 0xffff);
}
[[nodiscard]] inline uint64_t server_msg_time_ms(const wire::ServerMsgId& id) {
  return id.hi() >> 16;
}
[[nodiscard]] inline uint8_t server_msg_worker(const wire::ServerMsgId& id) {
  return static_cast<uint8_t>(id.lo() >> kServerMsgSequenceBits);
}
[[nodiscard]] inline uint64_t server_msg_sequence(const wire::ServerMsgId& id) {
  return id.lo() & kServerMsgSequenceMax;
}

// Ids order by time first (then node, worker, sequence), which is the order clients sort by.
[[nodiscard]] inline bool server_msg_id_less(const wire::ServerMsgId& a,
                                             const wire::ServerMsgId& b) {
  return a.hi() != b.hi() ? a.hi() < b.hi() : a.lo() < b.lo();
}

}  // namespace herald::codec
