// What the port loop hands the stack above it: a burst of received Ethernet frames with the
// port's checksum verdicts, and a TxBatch to build frames into. No DPDK type appears here, so
// the stack (dataplane/net/) compiles and is tested without DPDK.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace herald::dataplane::dpdk {

// A port's checksum verdict on a received frame. kUnknown: the port did not check (no offload,
// or a protocol it does not know): verify in software.
enum class RxChecksum : uint8_t { kUnknown, kGood, kBad };

struct RxFrame {
  std::span<const uint8_t> bytes;  // the whole Ethernet frame; valid during the call only
  uint16_t port = 0;               // the port's index in the config (dataplane.dpdk.ports)
  RxChecksum ip_checksum = RxChecksum::kUnknown;
  RxChecksum l4_checksum = RxChecksum::kUnknown;  // TCP or UDP
  // An ARP frame another loop received and answers, copied to this one to learn from (several
  // worker lcores on a port: flow_steering.h); the stack must not answer it.
  bool replica = false;
};

// What a port can do itself (port.h). The stack asks for checksums through TxOffload whatever
// the port has; the port loop uses the port where it can and software otherwise (counted).
struct PortOffloads {
  bool rx_ipv4_checksum = false;
  bool rx_tcp_checksum = false;
  bool rx_udp_checksum = false;
  bool tx_ipv4_checksum = false;
  bool tx_tcp_checksum = false;
  bool tx_udp_checksum = false;
};

// Checksums to fill in on an IPv4 frame being sent. l2_len / l3_len locate the headers (14 and
// 20 for Ethernet + IPv4 without options). Fields the stack leaves 0: the port loop writes them.
struct TxOffload {
  uint8_t l2_len = 0;
  uint8_t l3_len = 0;
  bool ipv4_checksum = false;
  bool tcp_checksum = false;  // at most one of tcp / udp
  bool udp_checksum = false;
};

// Frames to send from this loop, per port, in order; sent at the end of the loop's turn (or
// sooner, when a port's batch reaches the burst size).
class TxBatch {
 public:
  virtual ~TxBatch() = default;
  // A buffer of `length` bytes inside a frame for `port`, to fill before the next call on this
  // batch; empty when the mempool is out of mbufs (alloc_failures), the length exceeds an mbuf
  // (tx_oversize_drops) or `port` is unknown. The frame goes out as it is when the turn ends.
  virtual std::span<uint8_t> append(uint16_t port, uint16_t length,
                                    const TxOffload& offload = {}) = 0;
  // append() plus a copy of `frame`; false when append() gave nothing.
  bool send(uint16_t port, std::span<const uint8_t> frame, const TxOffload& offload = {}) {
    if (frame.size() > UINT16_MAX) return false;
    std::span<uint8_t> out = append(port, static_cast<uint16_t>(frame.size()), offload);
    if (out.empty()) return false;
    std::memcpy(out.data(), frame.data(), frame.size());
    return true;
  }
};

// The stack's side of a port loop. Called on the loop's lcore only.
class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // A burst from one port (frames.size() <= burst size). Frame bytes are valid during the call.
  virtual void on_frames(std::span<const RxFrame> frames, TxBatch& tx) = 0;
  // Once per loop turn after the bursts: timers, the application's work. Returns true when it
  // did something (so an adaptive loop does not go to sleep on a busy stack).
  virtual bool on_turn(uint64_t now_tsc, TxBatch& tx) = 0;
};

}  // namespace herald::dataplane::dpdk
