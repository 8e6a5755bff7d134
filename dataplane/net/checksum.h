// The Internet checksum in software (RFC 1071), the IPv4 pseudo-header, and incremental
// updates (RFC 1624) for when a header changes by a word or two.
#pragma once

#include <cstdint>
#include <span>

#include "dataplane/net/ip_address.h"

namespace herald::net {

// Adds `bytes` (as big-endian 16-bit words, an odd last byte padded with zero) to a running
// one's-complement sum. Chain calls only at even offsets: an odd-length piece must come last.
uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes);

// Folds the carries back in (RFC 1071 §2(c)): the 16-bit one's-complement sum, not inverted.
constexpr uint16_t checksum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}
// The value for a checksum field: the complement of the folded sum.
constexpr uint16_t checksum_finish(uint64_t sum) {
  return static_cast<uint16_t>(~checksum_fold(sum));
}

// The checksum field value for `bytes` alone (IPv4 header, ICMP message).
inline uint16_t internet_checksum(std::span<const uint8_t> bytes) {
  return checksum_finish(checksum_add(0, bytes));
}
// True when `bytes`, checksum field included, sums to all ones (RFC 1071 §1: the check).
inline bool checksum_ok(std::span<const uint8_t> bytes) {
  return checksum_fold(checksum_add(0, bytes)) == 0xffff;
}

// The TCP/UDP pseudo-header over IPv4 (RFC 9293 §3.1, RFC 768), as a partial sum to add the L4
// bytes to. Not inverted: with checksum offload this folded value goes in the field as is.
constexpr uint32_t pseudo_header_sum(const IpAddress& source, const IpAddress& destination,
                                     uint8_t protocol, uint32_t l4_bytes) {
  const uint32_t s = source.v4_host_order(), d = destination.v4_host_order();
  return (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + protocol + (l4_bytes & 0xffff) +
         (l4_bytes >> 16);
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), the new checksum when one 16-bit word of the
// covered data changes from `old_word` to `new_word`. Avoids the -0 trap of eqn. 2.
constexpr uint16_t checksum_update16(uint16_t checksum, uint16_t old_word, uint16_t new_word) {
  const uint32_t sum = uint32_t{static_cast<uint16_t>(~checksum)} +
                       uint32_t{static_cast<uint16_t>(~old_word)} + uint32_t{new_word};
  return static_cast<uint16_t>(~checksum_fold(sum));
}

}  // namespace herald::net
