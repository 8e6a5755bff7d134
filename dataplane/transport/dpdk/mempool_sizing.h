// The mbuf pool's size, computed once at start from rings, bursts, per-lcore caches and the
// connection limits (after DPDK l3fwd's NB_MBUF). A pure function: no DPDK call, unit-tested.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace herald::dataplane::dpdk {

struct MempoolInputs {
  uint32_t ports = 1;
  uint32_t rx_queues = 1;  // per port
  uint32_t rx_descriptors = 1024;
  uint32_t tx_queues = 1;  // per port
  uint32_t tx_descriptors = 1024;
  uint32_t burst_size = 32;
  uint32_t lcores = 1;  // port loops: lcores that take mbufs from the pool
  uint32_t cache_size = 256;
  uint64_t connections = 0;
  uint32_t mbufs_per_connection = 0;
  uint64_t element_bytes = 2432;  // one mbuf with its headers, as the pool lays it out
  // Slots of each loop's hand-off ring when several loops share the ports
  // (handoff_ring_slots()); 0 for one loop.
  uint32_t handoff_ring_slots = 0;
};

// Each loop's hand-off ring (port_loop.h LoopSteering) when `loops` > 1, else 0: a power of two
// (rte_ring) holding at least what every rx ring of the loop's ports can deliver at once,
// so a loop a whole rx ring behind still takes what the others hand it.
[[nodiscard]] uint32_t handoff_ring_slots(uint32_t ports, uint32_t rx_descriptors, uint32_t loops);

// The formula, term by term (what the start-up log prints):
//   rings       = ports * (rx_queues * rx_descriptors + tx_queues * tx_descriptors)
//                 every descriptor of every ring may hold an mbuf at once;
//   bursts      = lcores * burst_size * (1 + ports)
//                 a loop holds the rx burst in hand plus one tx batch per port being filled;
//   caches      = lcores * ceil(1.5 * cache_size)
//                 a per-lcore cache grows to 1.5x its size before it flushes
//                 (RTE_MEMPOOL_CACHE_FLUSHTHRESH_MULTIPLIER), and what sits there is not
//                 available to other lcores;
//   connections = connections * mbufs_per_connection
//                 segments the stack holds per connection (unacknowledged, out of order);
//   handoffs    = lcores * handoff_ring_slots
//                 frames waiting in the loops' hand-off rings (several loops only);
//   needed = rings + bursts + caches + connections + handoffs
//   mbufs  = the smallest 2^k - 1 >= needed (a mempool's ring has 2^k slots, one kept empty,
//            so 2^k - 1 objects use it fully: DPDK's rte_mempool_create documentation)
//   bytes  = mbufs * element_bytes
struct MempoolSize {
  uint64_t rings = 0;
  uint64_t bursts = 0;
  uint64_t caches = 0;
  uint64_t connections = 0;
  uint64_t handoffs = 0;
  uint64_t needed = 0;
  uint32_t mbufs = 0;
  uint64_t bytes = 0;
  std::string to_string() const;  // "rings=2048 bursts=64 ... mbufs=4095 bytes=..."
};

// The largest pool DPDK can hold (n is an unsigned int; 2^32 - 1 is the largest 2^k - 1).
inline constexpr uint64_t kMaxMempoolMbufs = (uint64_t{1} << 32) - 1;

// InvalidArgument when an input is zero where it cannot be (ports, queues, descriptors, burst,
// lcores, element size) or when needed exceeds kMaxMempoolMbufs.
[[nodiscard]] absl::StatusOr<MempoolSize> mempool_size(const MempoolInputs& in);

// The smallest 2^k - 1 >= n, for n <= kMaxMempoolMbufs (0 for 0).
[[nodiscard]] uint64_t round_up_pow2_minus_1(uint64_t n);

}  // namespace herald::dataplane::dpdk
