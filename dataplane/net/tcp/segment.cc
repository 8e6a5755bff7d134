// TCP segment parsing, building and checksums (see segment.h).
#include "dataplane/net/tcp/segment.h"

#include <cstdio>

namespace herald::net::tcp {
namespace {

uint16_t load16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

constexpr uint8_t kOptEnd = 0;
constexpr uint8_t kOptNop = 1;
constexpr uint8_t kOptMss = 2;
constexpr uint8_t kOptWscale = 3;
constexpr uint8_t kOptSackPermitted = 4;
constexpr uint8_t kOptSack = 5;
constexpr uint8_t kOptTimestamps = 8;
constexpr uint8_t kMaxWscale = 14;

}  // namespace

std::string IpAddr::to_string() const {
  char buf[64];
  if (family == 4) {
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u", bytes[0], bytes[1], bytes[2], bytes[3]);
  } else {
    std::snprintf(buf, sizeof(buf), "%x:%x:%x:%x:%x:%x:%x:%x", load16(bytes), load16(bytes + 2),
                  load16(bytes + 4), load16(bytes + 6), load16(bytes + 8), load16(bytes + 10),
                  load16(bytes + 12), load16(bytes + 14));
  }
  return buf;
}

uint32_t sum_bytes(std::span<const uint8_t> bytes, uint32_t sum) {
  size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) sum += load16(bytes.data() + i);
  if (i < bytes.size()) sum += uint32_t{bytes[i]} << 8;
  // Fold now and then so a 64 KiB segment cannot overflow 32 bits.
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

uint16_t fold_sum(uint32_t sum) {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

uint32_t pseudo_header_sum(const IpAddr& src, const IpAddr& dst, uint32_t tcp_length) {
  uint32_t sum = 0;
  sum = sum_bytes({src.bytes, src.length()}, sum);
  sum = sum_bytes({dst.bytes, dst.length()}, sum);
  sum += 6;  // protocol TCP
  sum += tcp_length >> 16;
  sum += tcp_length & 0xffff;
  return sum;
}

uint16_t tcp_checksum(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> segment) {
  uint32_t sum = pseudo_header_sum(src, dst, static_cast<uint32_t>(segment.size()));
  sum = sum_bytes(segment, sum);
  return static_cast<uint16_t>(~fold_sum(sum));
}

bool parse_options(std::span<const uint8_t> opts, TcpOptions* out) {
  size_t i = 0;
  while (i < opts.size()) {
    uint8_t kind = opts[i];
    if (kind == kOptEnd) break;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= opts.size()) return false;
    uint8_t len = opts[i + 1];
    if (len < 2 || i + len > opts.size()) return false;
    const uint8_t* p = opts.data() + i + 2;
    switch (kind) {
      case kOptMss:
        if (len != 4) return false;
        out->has_mss = true;
        out->mss = load16(p);
        break;
      case kOptWscale:
        if (len != 3) return false;
        out->has_wscale = true;
        out->wscale = p[0] > kMaxWscale ? kMaxWscale : p[0];
        break;
      case kOptSackPermitted:
        if (len != 2) return false;
        out->sack_permitted = true;
        break;
      case kOptTimestamps:
        if (len != 10) return false;
        out->has_timestamps = true;
        out->ts_val = load32(p);
        out->ts_ecr = load32(p + 4);
        break;
      case kOptSack: {
        if (len < 10 || (len - 2) % 8 != 0) {
          out->sack_malformed = true;
          break;
        }
        for (size_t b = 0; b < size_t{(len - 2u) / 8u}; ++b) {
          if (out->sack_count >= kMaxSackBlocks) {
            out->sack_malformed = true;  // a second SACK option: more than fits in one
            break;
          }
          out->sack[out->sack_count++] = {load32(p + 8 * b), load32(p + 8 * b + 4)};
        }
        break;
      }
      default: break;  // unknown options are skipped by length
    }
    i += len;
  }
  return true;
}

ParseError parse_segment(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> bytes,
                         bool checksum_verified, Segment* out) {
  if (bytes.size() < kTcpHeaderBytes) return ParseError::kTooShort;
  const uint8_t* p = bytes.data();
  size_t data_offset = size_t{static_cast<uint8_t>(p[12] >> 4)} * 4;
  if (data_offset < kTcpHeaderBytes || data_offset > bytes.size()) {
    return ParseError::kBadDataOffset;
  }
  if (!checksum_verified && tcp_checksum(src, dst, bytes) != 0) return ParseError::kBadChecksum;
  out->src_port = load16(p);
  out->dst_port = load16(p + 2);
  if (out->src_port == 0 || out->dst_port == 0) return ParseError::kBadPort;
  out->seq = load32(p + 4);
  out->ack = load32(p + 8);
  out->flags = p[13] & 0x3f;
  out->window = load16(p + 14);
  out->urgent = load16(p + 18);
  const uint8_t f = out->flags;
  if ((f & (kSyn | kFin | kRst | kAck)) == 0) return ParseError::kBadFlags;
  if ((f & kSyn) && (f & (kFin | kRst))) return ParseError::kBadFlags;
  out->options = TcpOptions{};
  if (!parse_options(bytes.subspan(kTcpHeaderBytes, data_offset - kTcpHeaderBytes),
                     &out->options)) {
    return ParseError::kBadOptions;
  }
  out->payload = bytes.subspan(data_offset);
  return ParseError::kNone;
}

size_t header_bytes(const SegmentSpec& s) {
  size_t n = kTcpHeaderBytes;
  if (s.flags & kSyn) {
    if (s.mss) n += 4;
    if (s.wscale) n += 4;                           // NOP + 3
    if (s.sack_permitted && !s.timestamps) n += 4;  // NOP NOP + 2 (else packed with TS)
  }
  if (s.timestamps) n += 12;  // (NOP NOP | SACK-permitted) + 10
  if (!(s.flags & kSyn) && s.sack_count > 0) n += 4 + 8 * size_t{s.sack_count};  // NOP NOP 5 len
  return n;
}

size_t build_segment(const IpAddr& src, const IpAddr& dst, const SegmentSpec& s,
                     std::span<const uint8_t> payload, bool offload, std::span<uint8_t> out) {
  const size_t hlen = header_bytes(s);
  const size_t total = hlen + payload.size();
  uint8_t* p = out.data();
  store16(p, s.src_port);
  store16(p + 2, s.dst_port);
  store32(p + 4, s.seq);
  store32(p + 8, s.ack);
  p[12] = static_cast<uint8_t>((hlen / 4) << 4);
  p[13] = s.flags;
  store16(p + 14, s.window);
  store16(p + 16, 0);
  store16(p + 18, 0);
  uint8_t* o = p + kTcpHeaderBytes;
  const bool syn = (s.flags & kSyn) != 0;
  if (syn && s.mss) {
    o[0] = kOptMss;
    o[1] = 4;
    store16(o + 2, s.mss_value);
    o += 4;
  }
  if (syn && s.wscale) {
    o[0] = kOptNop;
    o[1] = kOptWscale;
    o[2] = 3;
    o[3] = s.wscale_value;
    o += 4;
  }
  if (s.timestamps) {
    if (syn && s.sack_permitted) {
      o[0] = kOptSackPermitted;
      o[1] = 2;
    } else {
      o[0] = kOptNop;
      o[1] = kOptNop;
    }
    o[2] = kOptTimestamps;
    o[3] = 10;
    store32(o + 4, s.ts_val);
    store32(o + 8, s.ts_ecr);
    o += 12;
  } else if (syn && s.sack_permitted) {
    o[0] = kOptNop;
    o[1] = kOptNop;
    o[2] = kOptSackPermitted;
    o[3] = 2;
    o += 4;
  }
  if (!syn && s.sack_count > 0) {
    o[0] = kOptNop;
    o[1] = kOptNop;
    o[2] = kOptSack;
    o[3] = static_cast<uint8_t>(2 + 8 * s.sack_count);
    o += 4;
    for (size_t b = 0; b < s.sack_count; ++b) {
      store32(o, s.sack[b].left);
      store32(o + 4, s.sack[b].right);
      o += 8;
    }
  }
  if (!payload.empty()) std::memcpy(p + hlen, payload.data(), payload.size());
  uint16_t csum;
  if (offload) {
    csum = fold_sum(pseudo_header_sum(src, dst, static_cast<uint32_t>(total)));
  } else {
    csum = tcp_checksum(src, dst, {p, total});
  }
  store16(p + 16, csum);
  return total;
}

}  // namespace herald::net::tcp
