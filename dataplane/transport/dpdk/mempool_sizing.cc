// The mbuf pool's size formula (mempool_sizing.h): pure arithmetic in 64 bits, checked bounds.
#include "dataplane/transport/dpdk/mempool_sizing.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace herald::dataplane::dpdk {

uint64_t round_up_pow2_minus_1(uint64_t n) {
  uint64_t m = 0;  // 2^k - 1, growing: 0, 1, 3, 7, ...
  while (m < n) m = (m << 1) | 1;
  return m;
}

uint32_t handoff_ring_slots(uint32_t ports, uint32_t rx_descriptors, uint32_t loops) {
  if (loops <= 1) return 0;
  const uint64_t want = uint64_t{ports} * rx_descriptors + 1;  // a ring holds slots - 1
  uint64_t slots = 1;
  while (slots < want) slots <<= 1;
  return static_cast<uint32_t>(std::min<uint64_t>(slots, uint64_t{1} << 30));
}

std::string MempoolSize::to_string() const {
  return absl::StrCat("rings=", rings, " bursts=", bursts, " caches=", caches,
                      " connections=", connections, " handoffs=", handoffs, " needed=", needed,
                      " mbufs=", mbufs, " bytes=", bytes);
}

absl::StatusOr<MempoolSize> mempool_size(const MempoolInputs& in) {
  if (in.ports == 0 || in.rx_queues == 0 || in.tx_queues == 0 || in.rx_descriptors == 0 ||
      in.tx_descriptors == 0 || in.burst_size == 0 || in.lcores == 0 || in.element_bytes == 0) {
    return absl::InvalidArgumentError(
        "mempool sizing: ports, queues, descriptors, burst, lcores and element size must be > 0");
  }
  MempoolSize out;
  // Every input is at most 32 bits and no product below has more than three of them, the
  // largest being ports (< 2^16) * queues (< 2^16) * descriptors (< 2^32): no overflow in 64.
  out.rings = uint64_t{in.ports} * (uint64_t{in.rx_queues} * in.rx_descriptors +
                                    uint64_t{in.tx_queues} * in.tx_descriptors);
  out.bursts = uint64_t{in.lcores} * in.burst_size * (uint64_t{1} + in.ports);
  out.caches = uint64_t{in.lcores} * ((uint64_t{in.cache_size} * 3 + 1) / 2);
  // connections < 2^64 / 2^32 is not guaranteed for a 64-bit count: check before multiplying.
  if (in.mbufs_per_connection != 0 && in.connections > kMaxMempoolMbufs / in.mbufs_per_connection) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mempool sizing: ", in.connections, " connections x ", in.mbufs_per_connection,
        " mbufs each is more than the ", kMaxMempoolMbufs, " mbufs a DPDK mempool holds"));
  }
  out.connections = in.connections * in.mbufs_per_connection;
  out.handoffs = uint64_t{in.lcores} * in.handoff_ring_slots;
  out.needed = out.rings + out.bursts + out.caches + out.connections + out.handoffs;
  if (out.needed > kMaxMempoolMbufs) {
    return absl::InvalidArgumentError(absl::StrCat("mempool sizing: ", out.needed,
                                                   " mbufs needed, more than the ",
                                                   kMaxMempoolMbufs, " a DPDK mempool holds"));
  }
  const uint64_t mbufs = round_up_pow2_minus_1(out.needed);
  // DPDK refuses cache_size > n / 1.5; the caches term alone is lcores * 1.5 * cache_size with
  // lcores >= 1, so mbufs >= needed always satisfies it.
  out.mbufs = static_cast<uint32_t>(mbufs);
  out.bytes = mbufs * in.element_bytes;
  return out;
}

}  // namespace herald::dataplane::dpdk
