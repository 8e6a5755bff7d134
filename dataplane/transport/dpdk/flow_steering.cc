// Symmetric Toeplitz flow steering (flow_steering.h).
#include "dataplane/transport/dpdk/flow_steering.h"

#include "dataplane/net/wire.h"
#include "platform/assert/assert.h"

namespace herald::dataplane::dpdk {
namespace {

using net::wire::kEtherTypeArp;
using net::wire::kEtherTypeIpv4;
using net::wire::kEthHeaderBytes;
using net::wire::kEthType;
using net::wire::kIcmpHeaderBytes;
using net::wire::kIpv4Dst;
using net::wire::kIpv4FlagMf;
using net::wire::kIpv4FlagsFragment;
using net::wire::kIpv4HeaderBytes;
using net::wire::kIpv4OffsetMask;
using net::wire::kIpv4Protocol;
using net::wire::kIpv4Src;
using net::wire::load16;
using net::wire::load32;
using net::wire::store32;

// IP protocol numbers (IANA) the steering reads ports from or looks inside.
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

// The IPv4 header at `ip` (of `size` bytes): its length when it is a whole, unfragmented
// IPv4 header that fits, else 0. Fragments are not steered by ports (only the first has them);
// the stack does not reassemble, so they stay where they arrive and are counted there.
size_t unfragmented_header_bytes(const uint8_t* ip, size_t size) {
  if (size < kIpv4HeaderBytes || (ip[0] >> 4) != 4) return 0;
  const size_t header = size_t{ip[0] & 0x0fu} * 4;
  if (header < kIpv4HeaderBytes || header > size) return 0;
  const uint16_t flags_fragment = load16(ip + kIpv4FlagsFragment);
  // MF set or a non-zero offset
  if ((flags_fragment & (kIpv4FlagMf | kIpv4OffsetMask)) != 0) return 0;
  return header;
}

bool is_icmp_error(uint8_t type) {
  // Destination unreachable, source quench, redirect, time exceeded, parameter problem: each
  // carries the offending datagram's IP header and first 8 bytes (RFC 792).
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

}  // namespace

const std::array<uint8_t, kRssKeyBytes> kSymmetricRssKey = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a};

uint32_t toeplitz_hash(std::span<const uint8_t> key, std::span<const uint8_t> input) {
  HERALD_CHECK(key.size() >= input.size() + 4, "toeplitz: key shorter than input + 4 bytes");
  uint32_t result = 0;
  // The 32-bit window of the key starting at the current input bit; shifted left one bit per
  // input bit, refilled from the key byte after it.
  uint32_t window = load32(key.data());
  for (size_t i = 0; i < input.size(); ++i) {
    const uint8_t next = key[i + 4];
    for (int bit = 7; bit >= 0; --bit) {
      if ((input[i] >> bit) & 1u) result ^= window;
      window = (window << 1) | ((next >> bit) & 1u);
    }
  }
  return result;
}

FlowSteering::FlowSteering(uint16_t queues, uint16_t table_size)
    : queues_(queues), table_(table_size) {
  HERALD_CHECK(queues >= 1, "flow steering needs a queue");
  HERALD_CHECK(table_size >= queues && (table_size & (table_size - 1)) == 0,
               "flow steering: the table size must be a power of two >= the queues");
  for (size_t i = 0; i < table_.size(); ++i) table_[i] = static_cast<uint16_t>(i % queues);
  // The hash is linear in its input bits: the hash of a tuple is the XOR of the hashes of its
  // bytes each alone at their position.
  std::array<uint8_t, kTupleBytes> one{};
  for (size_t position = 0; position < kTupleBytes; ++position) {
    for (uint32_t value = 0; value < 256; ++value) {
      one.fill(0);
      one[position] = static_cast<uint8_t>(value);
      partial_[position][value] = toeplitz_hash(kSymmetricRssKey, one);
    }
  }
}

uint32_t FlowSteering::hash(uint32_t src_ip, uint32_t dst_ip, uint16_t src_port,
                            uint16_t dst_port) const {
  uint8_t tuple[kTupleBytes];
  store32(tuple, src_ip);
  store32(tuple + 4, dst_ip);
  tuple[8] = static_cast<uint8_t>(src_port >> 8);
  tuple[9] = static_cast<uint8_t>(src_port);
  tuple[10] = static_cast<uint8_t>(dst_port >> 8);
  tuple[11] = static_cast<uint8_t>(dst_port);
  uint32_t h = 0;
  for (size_t i = 0; i < kTupleBytes; ++i) h ^= partial_[i][tuple[i]];
  return h;
}

uint32_t FlowSteering::hash(uint32_t src_ip, uint32_t dst_ip) const {
  uint8_t pair[8];
  store32(pair, src_ip);
  store32(pair + 4, dst_ip);
  uint32_t h = 0;
  for (size_t i = 0; i < sizeof(pair); ++i) h ^= partial_[i][pair[i]];
  return h;
}

FlowSteering::Owner FlowSteering::owner(std::span<const uint8_t> frame) const {
  Owner local;
  if (frame.size() < kEthHeaderBytes) return local;
  const uint16_t type = load16(frame.data() + kEthType);
  if (type == kEtherTypeArp) return Owner{Owner::Kind::kEvery, 0};
  if (type != kEtherTypeIpv4) return local;
  const uint8_t* ip = frame.data() + kEthHeaderBytes;
  const size_t ip_size = frame.size() - kEthHeaderBytes;
  const size_t header = unfragmented_header_bytes(ip, ip_size);
  if (header == 0) return local;
  const uint8_t protocol = ip[kIpv4Protocol];
  const uint8_t* l4 = ip + header;
  const size_t l4_size = ip_size - header;
  if (protocol == kProtoTcp || protocol == kProtoUdp) {
    if (l4_size < 4) return local;
    return Owner{Owner::Kind::kQueue, queue_for(load32(ip + kIpv4Src), load32(ip + kIpv4Dst),
                                                load16(l4), load16(l4 + 2))};
  }
  if (protocol == kProtoIcmp && l4_size >= kIcmpHeaderBytes && is_icmp_error(l4[0])) {
    // The datagram inside is one we sent (source us, destination the peer): with a symmetric
    // key its hash is the flow's, so the error reaches the lcore owning the connection.
    const uint8_t* inner = l4 + kIcmpHeaderBytes;
    const size_t inner_size = l4_size - kIcmpHeaderBytes;
    const size_t inner_header = unfragmented_header_bytes(inner, inner_size);
    if (inner_header == 0 || inner_size < inner_header + 4) return local;
    if (inner[kIpv4Protocol] != kProtoTcp && inner[kIpv4Protocol] != kProtoUdp) return local;
    const uint8_t* inner_l4 = inner + inner_header;
    return Owner{Owner::Kind::kQueue, queue_for(load32(inner + kIpv4Src), load32(inner + kIpv4Dst),
                                                load16(inner_l4), load16(inner_l4 + 2))};
  }
  return local;
}

}  // namespace herald::dataplane::dpdk
