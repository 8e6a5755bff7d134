// Which worker lcore owns a received frame when a port has several rx queues: the Toeplitz
// hash of the frame's IPv4 addresses and TCP/UDP ports under a symmetric key, through an
// indirection table, exactly as a NIC's RSS computes it. No DPDK type: the stack's active opens
// ask the same question (which source port lands on my lcore), and it is unit-tested alone.
//
//   FlowSteering steering(/*queues=*/2, FlowSteering::kDefaultTableSize);
//   Owner o = steering.owner(frame_bytes);     // kQueue q, kEvery (ARP) or kLocal
//   steering.queue_for(us, peer, our_port, peer_port) == steering.queue_for(peer, us, ...)
//
// Symmetric key: 0x6d5a repeated (Woo and Park, "Scalable TCP Session Monitoring with Symmetric
// Receive-side Scaling", 2012). With it the hash of (a, b, pa, pb) equals the hash of
// (b, a, pb, pa), so both directions of a connection, and the header inside an ICMP error about
// it, land on the same lcore.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace herald::dataplane::dpdk {

// 40 bytes: the key length of most NICs (rte_eth_dev_info::hash_key_size).
inline constexpr size_t kRssKeyBytes = 40;
extern const std::array<uint8_t, kRssKeyBytes> kSymmetricRssKey;

// The Toeplitz hash of `input` under `key` (Microsoft's RSS definition: for every set bit i of
// the input, most significant first, XOR in the 32 key bits starting at bit i). The key must be
// at least input.size() + 4 bytes. The reference form; FlowSteering uses a table of it.
uint32_t toeplitz_hash(std::span<const uint8_t> key, std::span<const uint8_t> input);

class FlowSteering {
 public:
  // Indirection table entries: 128 like most NICs' default RETA; a power of two (the NIC indexes
  // it with the hash's low bits).
  static constexpr uint16_t kDefaultTableSize = 128;

  struct Owner {
    enum class Kind : uint8_t {
      kQueue,  // a TCP/UDP flow (or an ICMP error about one): the queue `queue` handles it
      kEvery,  // ARP: every lcore learns from it (each has its own ARP cache), one answers it
      kLocal,  // anything else (ICMP echo, other protocols, malformed): where it arrived
    };
    Kind kind = Kind::kLocal;
    uint16_t queue = 0;
  };

  // `queues` >= 1; `table_size` a power of two >= queues. Entry i of the table is queue
  // i % queues (what Port programs into a NIC's RETA).
  FlowSteering(uint16_t queues, uint16_t table_size = kDefaultTableSize);

  uint16_t queues() const { return queues_; }
  uint16_t table_size() const { return static_cast<uint16_t>(table_.size()); }
  const std::vector<uint16_t>& table() const { return table_; }

  // The hash of an IPv4 flow as a NIC computes it on a received frame: source address,
  // destination address, source port, destination port (network byte order on the wire;
  // host order here).
  uint32_t hash(uint32_t src_ip, uint32_t dst_ip, uint16_t src_port, uint16_t dst_port) const;
  // The IPv4-only hash (no ports): a NIC's RSS for fragments and other protocols.
  uint32_t hash(uint32_t src_ip, uint32_t dst_ip) const;
  uint16_t queue_of_hash(uint32_t hash) const { return table_[hash & (table_.size() - 1)]; }
  uint16_t queue_for(uint32_t src_ip, uint32_t dst_ip, uint16_t src_port, uint16_t dst_port) const {
    return queue_of_hash(hash(src_ip, dst_ip, src_port, dst_port));
  }
  // Who handles this Ethernet frame. Never reads past `frame`; anything it cannot parse is
  // kLocal (the receiving stack counts the drop).
  Owner owner(std::span<const uint8_t> frame) const;

 private:
  // table_bytes_[i][v]: the hash contribution of byte value v at input position i, for the
  // 12 bytes of an IPv4 4-tuple: hashing is 12 lookups and XORs.
  static constexpr size_t kTupleBytes = 12;
  std::array<std::array<uint32_t, 256>, kTupleBytes> partial_{};
  uint16_t queues_;
  std::vector<uint16_t> table_;
};

}  // namespace herald::dataplane::dpdk
