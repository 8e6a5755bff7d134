// Frame I/O between a port (DPDK, the impairment layer, a test) and the stack: what comes with a
// received frame, and the small interface the stack transmits through.
#pragma once

#include <cstdint>

namespace herald::net {

// What the port's hardware already found about a checksum. kBad frames are dropped without
// recomputing; kUnknown means the stack computes it in software.
enum class ChecksumHint : uint8_t { kUnknown, kGood, kBad };

// Comes with each received frame (the frame itself is a std::span valid only for the call).
struct RxMeta {
  ChecksumHint ipv4_checksum = ChecksumHint::kUnknown;
  ChecksumHint l4_checksum = ChecksumHint::kUnknown;  // TCP or UDP
  // A copy of an ARP frame another lcore's stack received and answers (several worker lcores
  // on one port: each keeps its own ARP cache). The stack learns from it, never answers it, and
  // counts it apart (arp_replicas) so per-lcore totals do not count one frame twice.
  bool replica = false;
};

// What a port can do for transmitted frames; asked once, when the stack is built.
struct PortCapabilities {
  bool tx_ipv4_checksum = false;
  // The port fills the TCP/UDP checksum. The stack then leaves the pseudo-header sum (not
  // complemented) in the checksum field, which is what DPDK's PMDs expect.
  bool tx_l4_checksum = false;
};

// Per transmitted frame: which offloads the port must apply and where the headers are.
struct TxOffload {
  bool ipv4_checksum = false;
  bool l4_checksum = false;
  uint8_t l4_protocol = 0;  // 6 TCP, 17 UDP when l4_checksum
  uint8_t l2_bytes = 0;
  uint8_t l3_bytes = 0;
};

// A transmit buffer the port handed out: `data` has room for `capacity_bytes` (the port keeps
// its own headroom in front of it); `handle` is the port's (an rte_mbuf*, a slot index).
struct TxFrame {
  uint8_t* data = nullptr;
  uint32_t capacity_bytes = 0;
  uint64_t handle = 0;
};

// Implemented by the port layer. One virtual call per frame, never per byte: the same cost as a
// function pointer, type-checked, and trivial to fake in tests, while the stack stays a concrete,
// non-template class compiled once (templating it on the port would pull all of it into
// headers and into every user). Used only on the owning lcore.
class FramePort {
 public:
  virtual ~FramePort() = default;

  virtual PortCapabilities capabilities() const = 0;
  // A buffer of at least `length_bytes`, or false when there is none (pool empty, tx queue
  // full): the stack counts the drop (tx_alloc_failed) and carries on.
  [[nodiscard]] virtual bool alloc(uint32_t length_bytes, TxFrame* frame) = 0;
  // Queues a filled frame of `length_bytes` for the caller's next flush; the port owns it now.
  virtual void queue(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) = 0;
  // Gives back a buffer that will not be queued (dropped while waiting on ARP, aborted).
  virtual void release(const TxFrame& frame) = 0;
};

}  // namespace herald::net
