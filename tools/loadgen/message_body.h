// The body of every loadgen message: who sent it, its sequence and when, so a receiver in any
// process can check it and time it. Little-endian, 32 bytes, then padding to --body-bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace herald::tools::loadgen {

inline constexpr uint32_t kBodyMagic = 0x31474c48;  // "HLG1"
inline constexpr size_t kBodyHeaderBytes = 32;

struct BodyHeader {
  uint32_t run_id = 0;  // a delivery from an earlier run (left in a queue) is told apart
  uint32_t sender = 0;  // account index
  uint64_t sequence = 0;
  // CLOCK_MONOTONIC (shared by every process of the machine) when the message was due.
  int64_t send_time_ns = 0;
};

// Writes the header at the start of `body` (at least kBodyHeaderBytes long); the rest is left.
inline void encode_body_header(const BodyHeader& h, std::span<uint8_t> body) {
  uint8_t* p = body.data();
  const uint32_t magic = kBodyMagic;
  const uint32_t reserved = 0;
  std::memcpy(p, &magic, 4);
  std::memcpy(p + 4, &h.run_id, 4);
  std::memcpy(p + 8, &h.sender, 4);
  std::memcpy(p + 12, &reserved, 4);
  std::memcpy(p + 16, &h.sequence, 8);
  std::memcpy(p + 24, &h.send_time_ns, 8);
}

// nullopt when `body` is not a loadgen body (too short, other magic).
inline std::optional<BodyHeader> decode_body_header(std::span<const uint8_t> body) {
  if (body.size() < kBodyHeaderBytes) return std::nullopt;
  uint32_t magic = 0;
  std::memcpy(&magic, body.data(), 4);
  if (magic != kBodyMagic) return std::nullopt;
  BodyHeader h;
  std::memcpy(&h.run_id, body.data() + 4, 4);
  std::memcpy(&h.sender, body.data() + 8, 4);
  std::memcpy(&h.sequence, body.data() + 16, 8);
  std::memcpy(&h.send_time_ns, body.data() + 24, 8);
  return h;
}

// Client message ids carry the run in their top 32 bits: accounts are reused across runs, and a
// new run's message 1 must not fall in the server's dedup window as a resend of the last one.
inline uint64_t client_msg_id_of(uint32_t run_id, uint64_t sequence) {
  return uint64_t{run_id} << 32 | (sequence & 0xffffffffu);
}

}  // namespace herald::tools::loadgen
