// TCP segments on the wire: header parsing with every check an untrusted packet needs, options
// (MSS, window scale, SACK-permitted, timestamps), building, and the pseudo-header checksum.
// Pure functions over byte spans; no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/net/tcp/types.h"

namespace herald::net::tcp {

inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
inline constexpr uint8_t kUrg = 0x20;

inline constexpr size_t kTcpHeaderBytes = 20;
inline constexpr size_t kTcpMaxHeaderBytes = 60;

// One SACK block (RFC 2018): the peer holds [left, right).
struct SackBlock {
  uint32_t left = 0;
  uint32_t right = 0;
};
// At most 4 blocks fit in 40 option bytes (3 beside timestamps).
inline constexpr size_t kMaxSackBlocks = 4;

struct TcpOptions {
  bool has_mss = false;
  uint16_t mss = 0;
  bool has_wscale = false;
  uint8_t wscale = 0;  // clamped to 14 (RFC 7323 2.3) by the parser
  bool sack_permitted = false;
  bool has_timestamps = false;
  uint32_t ts_val = 0;
  uint32_t ts_ecr = 0;
  // SACK blocks as received, unchecked against any window (the engine validates them).
  uint8_t sack_count = 0;
  SackBlock sack[kMaxSackBlocks];
  // A SACK option with an impossible length (not 2 + 8n): ignored, not a malformed segment
  // (Linux does the same), so the engine can count it.
  bool sack_malformed = false;
};

// A parsed segment. `payload` points into the caller's packet.
struct Segment {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;  // raw, unscaled
  uint16_t urgent = 0;
  TcpOptions options;
  std::span<const uint8_t> payload;

  bool has(uint8_t flag) const { return (flags & flag) != 0; }
  // Sequence space the segment occupies: payload plus one each for SYN and FIN.
  uint32_t seg_len() const {
    return static_cast<uint32_t>(payload.size()) + (has(kSyn) ? 1 : 0) + (has(kFin) ? 1 : 0);
  }
};

enum class ParseError : uint8_t {
  kNone,
  kTooShort,       // shorter than 20 bytes
  kBadDataOffset,  // data offset < 5 or beyond the segment
  kBadFlags,       // SYN+FIN, SYN+RST, or no flag at all (null scan)
  kBadOptions,     // an option runs past the header or has an impossible length
  kBadChecksum,
  kBadPort,  // source or destination port 0
};

// Parses and checks `bytes` (the TCP header and payload; the IP layer gives the exact length).
// The checksum is checked unless `checksum_verified` (offload already did it).
ParseError parse_segment(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> bytes,
                         bool checksum_verified, Segment* out);

// Parses the options area alone; false on a malformed option.
bool parse_options(std::span<const uint8_t> options, TcpOptions* out);

// What build_segment writes.
struct SegmentSpec {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  // SYN options: MSS, window scale and SACK-permitted are written only on SYNs.
  bool mss = false;
  uint16_t mss_value = 0;
  bool wscale = false;
  uint8_t wscale_value = 0;
  bool sack_permitted = false;
  bool timestamps = false;
  uint32_t ts_val = 0;
  uint32_t ts_ecr = 0;
  // SACK blocks (non-SYN segments only); the caller keeps them within the 40 option bytes:
  // at most 3 with timestamps, 4 without.
  uint8_t sack_count = 0;
  SackBlock sack[kMaxSackBlocks];
};

// Header length build_segment will write for `spec` (a multiple of 4).
size_t header_bytes(const SegmentSpec& spec);

// Writes header + payload into `out` (which must hold header_bytes(spec) + payload.size()) and
// returns the bytes written. The checksum is complete unless `offload`, in which case the field
// holds the pseudo-header sum only (what NICs with TCP checksum offload expect).
size_t build_segment(const IpAddr& src, const IpAddr& dst, const SegmentSpec& spec,
                     std::span<const uint8_t> payload, bool offload, std::span<uint8_t> out);

// One's-complement sum helpers. `pseudo_header_sum` covers addresses, protocol and length.
uint32_t pseudo_header_sum(const IpAddr& src, const IpAddr& dst, uint32_t tcp_length);
uint32_t sum_bytes(std::span<const uint8_t> bytes, uint32_t sum);
uint16_t fold_sum(uint32_t sum);
// The checksum of a complete segment, as it should appear in the header field (0 when the
// segment, checksum field included, is correct).
uint16_t tcp_checksum(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> segment);

}  // namespace herald::net::tcp
