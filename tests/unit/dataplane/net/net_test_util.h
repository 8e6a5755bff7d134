// Test helpers for dataplane/net: a FramePort that records what the stack sends, and builders
// for Ethernet, ARP, IPv4, ICMP, UDP and TCP frames with an independent (naive) checksum.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/net/frame_io.h"
#include "dataplane/net/ip_address.h"
#include "dataplane/net/l4.h"

namespace herald::net::testing {

using Bytes = std::vector<uint8_t>;

inline constexpr MacAddress kOurMac{{0x02, 0, 0, 0, 0, 0x01}};
inline constexpr MacAddress kPeerMac{{0x02, 0, 0, 0, 0, 0x02}};
inline constexpr MacAddress kGatewayMac{{0x02, 0, 0, 0, 0, 0xfe}};
inline constexpr IpAddress kOurIp = IpAddress::v4(10, 0, 0, 1);
inline constexpr IpAddress kPeerIp = IpAddress::v4(10, 0, 0, 2);
inline constexpr IpAddress kGatewayIp = IpAddress::v4(10, 0, 0, 254);

// Records queued frames; every buffer handed out is tracked so a test can prove none leaks.
class FakePort : public FramePort {
 public:
  struct Sent {
    Bytes bytes;
    TxOffload offload;
  };

  PortCapabilities caps;
  uint32_t allocs_to_fail = 0;  // the next N alloc() calls fail
  std::vector<Sent> sent;
  uint64_t released = 0;

  PortCapabilities capabilities() const override { return caps; }
  bool alloc(uint32_t length_bytes, TxFrame* frame) override {
    if (allocs_to_fail > 0) {
      --allocs_to_fail;
      return false;
    }
    auto buffer = std::make_unique<Bytes>(length_bytes + 64, 0xa5);  // garbage, like a real pool
    frame->data = buffer->data();
    frame->capacity_bytes = static_cast<uint32_t>(buffer->size());
    frame->handle = next_handle_++;
    outstanding_[frame->handle] = std::move(buffer);
    return true;
  }
  void queue(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) override {
    auto it = outstanding_.find(frame.handle);
    ASSERT_NE(it, outstanding_.end()) << "queue of an unknown buffer";
    ASSERT_LE(length_bytes, frame.capacity_bytes);
    sent.push_back(Sent{Bytes(frame.data, frame.data + length_bytes), offload});
    outstanding_.erase(it);
  }
  void release(const TxFrame& frame) override {
    auto it = outstanding_.find(frame.handle);
    ASSERT_NE(it, outstanding_.end()) << "release of an unknown buffer";
    outstanding_.erase(it);
    ++released;
  }
  size_t outstanding() const { return outstanding_.size(); }

 private:
  uint64_t next_handle_ = 1;
  std::map<uint64_t, std::unique_ptr<Bytes>> outstanding_;
};

// Records what an L4 engine would get.
class RecordingReceiver : public L4Receiver {
 public:
  struct Got {
    IpAddress source, destination;
    uint8_t protocol;
    uint8_t ttl;
    Bytes bytes;
  };
  std::vector<Got> got;
  void on_packet(const L4Packet& p) override {
    got.push_back(
        Got{p.source, p.destination, p.protocol, p.ttl, Bytes(p.bytes.begin(), p.bytes.end())});
  }
};

// RFC 1071 the slow, obvious way: the reference the stack's checksums are held to.
inline uint16_t naive_sum(std::span<const uint8_t> b, uint32_t start = 0) {
  uint32_t sum = start;
  for (size_t i = 0; i < b.size(); i += 2) {
    sum += static_cast<uint32_t>(b[i] << 8) + (i + 1 < b.size() ? b[i + 1] : 0);
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(sum);
}
inline uint16_t naive_checksum(std::span<const uint8_t> b, uint32_t start = 0) {
  return static_cast<uint16_t>(~naive_sum(b, start));
}
inline uint32_t naive_pseudo(IpAddress s, IpAddress d, uint8_t proto, size_t len) {
  uint32_t sum = 0;
  for (uint32_t v : {s.v4_host_order(), d.v4_host_order()}) sum += (v >> 16) + (v & 0xffff);
  sum += proto + static_cast<uint32_t>(len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

inline void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
// Appends by index: GCC 12 warns falsely (-Warray-bounds) on vector::insert in these builders.
inline void append(Bytes& b, const Bytes& more) {
  const size_t n = b.size();
  b.resize(n + more.size());
  for (size_t i = 0; i < more.size(); ++i) b[n + i] = more[i];
}
inline uint16_t get16(const Bytes& b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}
inline uint32_t get32(const Bytes& b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         b[at + 3];
}
inline void put32(Bytes& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}
inline MacAddress mac_at(const Bytes& b, size_t at) {
  MacAddress m;
  std::copy(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at) + 6,
            m.bytes.begin());
  return m;
}

inline Bytes eth(MacAddress dst, MacAddress src, uint16_t type, const Bytes& payload) {
  Bytes b(14 + payload.size());
  for (size_t i = 0; i < 6; ++i) {
    b[i] = dst.bytes[i];
    b[6 + i] = src.bytes[i];
  }
  put16(b, 12, type);
  for (size_t i = 0; i < payload.size(); ++i) b[14 + i] = payload[i];
  return b;
}

inline Bytes arp(uint16_t op, MacAddress sha, uint32_t spa, MacAddress tha, uint32_t tpa) {
  Bytes b(28);
  put16(b, 0, 1);
  put16(b, 2, 0x0800);
  b[4] = 6;
  b[5] = 4;
  put16(b, 6, op);
  for (size_t i = 0; i < 6; ++i) {
    b[8 + i] = sha.bytes[i];
    b[18 + i] = tha.bytes[i];
  }
  put32(b, 14, spa);
  put32(b, 24, tpa);
  return b;
}

struct Ipv4Fields {
  uint8_t ttl = 64;
  uint16_t flags_fragment = 0x4000;
  Bytes options;  // a multiple of 4
  int total_length_delta = 0;
};

inline Bytes ipv4(IpAddress src, IpAddress dst, uint8_t proto, const Bytes& payload,
                  const Ipv4Fields& f = {}) {
  const size_t header = 20 + f.options.size();
  Bytes b(header);
  b[0] = static_cast<uint8_t>(0x40 | (header / 4));
  put16(b, 2,
        static_cast<uint16_t>(static_cast<int>(header + payload.size()) + f.total_length_delta));
  put16(b, 4, 0x1234);
  put16(b, 6, f.flags_fragment);
  b[8] = f.ttl;
  b[9] = proto;
  put32(b, 12, src.v4_host_order());
  put32(b, 16, dst.v4_host_order());
  std::copy(f.options.begin(), f.options.end(), b.begin() + 20);
  put16(b, 10, naive_checksum(b));
  append(b, payload);
  return b;
}

inline Bytes icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq, const Bytes& data) {
  Bytes b(8);
  b[0] = type;
  b[1] = code;
  put16(b, 4, id);
  put16(b, 6, seq);
  append(b, data);
  put16(b, 2, naive_checksum(b));
  return b;
}

inline Bytes udp(IpAddress src, IpAddress dst, uint16_t sport, uint16_t dport, const Bytes& data,
                 bool checksum = true) {
  Bytes b(8);
  put16(b, 0, sport);
  put16(b, 2, dport);
  put16(b, 4, static_cast<uint16_t>(8 + data.size()));
  append(b, data);
  if (checksum) {
    uint16_t c = naive_checksum(b, naive_pseudo(src, dst, 17, b.size()));
    put16(b, 6, c == 0 ? 0xffff : c);
  }
  return b;
}

inline Bytes tcp(IpAddress src, IpAddress dst, uint16_t sport, uint16_t dport, const Bytes& data) {
  Bytes b(20);
  put16(b, 0, sport);
  put16(b, 2, dport);
  put32(b, 4, 1000);
  b[12] = 5 << 4;
  b[13] = 0x02;  // SYN
  put16(b, 14, 65535);
  append(b, data);
  put16(b, 16, naive_checksum(b, naive_pseudo(src, dst, 6, b.size())));
  return b;
}

// A full frame from the peer to us.
inline Bytes peer_ip_frame(uint8_t proto, const Bytes& l4, const Ipv4Fields& f = {},
                           IpAddress src = kPeerIp, IpAddress dst = kOurIp) {
  return eth(kOurMac, kPeerMac, 0x0800, ipv4(src, dst, proto, l4, f));
}

}  // namespace herald::net::testing
