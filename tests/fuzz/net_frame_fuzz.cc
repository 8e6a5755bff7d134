// libFuzzer target for the user-space stack (dataplane/net): arbitrary bytes become a sequence
// of Ethernet frames, with port checksum hints, time steps, a TCP receiver that answers through
// the L4 output path, and optionally seeded rx impairment, all chosen by the input. The stack
// must only emit well-formed frames, never leak or double-free a port buffer, and never crash.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dataplane/net/checksum.h"
#include "dataplane/net/impairment.h"
#include "dataplane/net/stack.h"

namespace {

using namespace herald::net;  // NOLINT: a fuzz target

void check(bool ok) {
  if (!ok) __builtin_trap();
}

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

// A small fixed pool, so running out of buffers (tx_alloc_failed) is part of the game.
class PoolPort final : public FramePort {
 public:
  static constexpr uint32_t kBuffers = 16;
  static constexpr uint32_t kBufferBytes = 2048;

  explicit PoolPort(bool offload) : offload_(offload), storage_(kBuffers * kBufferBytes) {}

  PortCapabilities capabilities() const override {
    return PortCapabilities{.tx_ipv4_checksum = offload_, .tx_l4_checksum = offload_};
  }
  bool alloc(uint32_t length_bytes, TxFrame* frame) override {
    if (length_bytes > kBufferBytes) return false;
    for (uint32_t i = 0; i < kBuffers; ++i) {
      if (in_use_[i]) continue;
      in_use_[i] = true;
      frame->data = storage_.data() + i * kBufferBytes;
      frame->capacity_bytes = kBufferBytes;
      frame->handle = i;
      std::memset(frame->data, 0xa5, kBufferBytes);
      return true;
    }
    return false;
  }
  void queue(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload) override {
    give_back(frame);
    check(length_bytes >= 60 && length_bytes <= frame.capacity_bytes);
    const uint8_t* f = frame.data;
    MacAddress src;
    std::memcpy(src.bytes.data(), f + 6, 6);
    check(src == kOurMac);
    const uint16_t type = be16(f + 12);
    check(type == 0x0800 || type == 0x0806);
    if (type == 0x0800) {
      const uint8_t* ip = f + 14;
      check(ip[0] == 0x45);
      const uint16_t total = be16(ip + 2);
      check(total >= 20 && 14u + total <= length_bytes);
      check(ip[8] != 0);  // never TTL 0
      if (!offload.ipv4_checksum) check(checksum_ok({ip, 20}));
      MacAddress dst;
      std::memcpy(dst.bytes.data(), f, 6);
      check(!dst.is_multicast() && !dst.is_zero());
    }
    ++sent;
  }
  void release(const TxFrame& frame) override { give_back(frame); }

  uint32_t outstanding() const {
    uint32_t n = 0;
    for (bool b : in_use_) n += b;
    return n;
  }
  uint64_t sent = 0;
  static constexpr MacAddress kOurMac{{0x02, 0, 0, 0, 0, 0x01}};

 private:
  void give_back(const TxFrame& frame) {
    check(frame.handle < kBuffers && in_use_[frame.handle]);
    check(frame.data == storage_.data() + frame.handle * kBufferBytes);
    in_use_[frame.handle] = false;
  }
  bool offload_;
  std::vector<uint8_t> storage_;
  bool in_use_[kBuffers] = {};
};

// Answers every TCP segment with a segment of the same bytes through L4Output, so the output
// path (checksums, ARP waiting queues, allocation failures) runs under fuzzed input.
class EchoTcp final : public L4Receiver {
 public:
  L4Output* out = nullptr;
  void on_packet(const L4Packet& p) override {
    check(p.bytes.size() >= 20 && p.protocol == kIpProtocolTcp);
    check(p.destination == out->local_address());
    const auto n = static_cast<uint32_t>(std::min<size_t>(p.bytes.size(), out->max_l4_bytes()));
    L4TxFrame f;
    if (!out->alloc(p.source, kIpProtocolTcp, n, &f)) return;
    check(f.capacity_bytes >= n);
    std::memcpy(f.l4, p.bytes.data(), n);
    if (p.bytes[13] & 1) {
      out->abort(f);
    } else {
      out->send(f, n, p.now_ns);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t control = data[0];
  const uint8_t seed = data[1];
  std::span<const uint8_t> rest(data + 2, size - 2);

  NetOptions options;
  options.mac = PoolPort::kOurMac;
  options.address = IpAddress::v4(10, 0, 0, 1);
  options.gateway = IpAddress::v4(10, 0, 0, 254);
  options.arp_entries = 4;  // small limits, so the edges are reached
  options.arp_queue_per_entry = 2;
  options.arp_queue_total = 5;
  options.arp_retry_ms = 1;
  options.arp_requests = 2;
  options.arp_reachable_ms = 50;
  options.arp_refresh_before_ms = 10;
  options.icmp_echo_burst = 4;
  options.icmp_unreach_burst = 4;
  options.mtu_bytes = (control & 0x40) ? 576 : 1500;

  PoolPort port((control & 0x20) != 0);
  {
    NetStack stack(options, port);
    EchoTcp tcp;
    tcp.out = &stack;
    if (control & 0x10) stack.set_receiver(kIpProtocolTcp, &tcp);
    const RxMeta meta{static_cast<ChecksumHint>((control & 3) % 3),
                      static_cast<ChecksumHint>(((control >> 2) & 3) % 3)};
    ImpairmentOptions io;
    if (control & 0x80) {
      io.drop_ppm = io.duplicate_ppm = io.reorder_ppm = io.delay_ppm = io.corrupt_ppm = 100'000;
      io.delay_us = 500;
      io.hold_frames = 4;
      io.seed = seed;
    }
    ImpairedRx rx(io);
    uint64_t now_ns = 0;
    auto deliver = [&](std::span<const uint8_t> frame, const RxMeta& m) {
      const RxResult r = stack.receive(frame, m, now_ns);
      check((r.verdict == RxVerdict::kDropped) == (r.reason != DropReason::kNone));
    };
    stack.start(now_ns);
    // Frames: [length (1 byte, x8 when the top bit is set)][time step in 100 us][bytes].
    while (rest.size() >= 2) {
      size_t len = rest[0] & 0x7f;
      if (rest[0] & 0x80) len *= 8;
      now_ns += uint64_t{rest[1]} * 100'000;
      rest = rest.subspan(2);
      len = std::min(len, rest.size());
      // A copy in a buffer of exactly the frame's size, so ASan sees any read past its end.
      std::vector<uint8_t> frame(rest.begin(), rest.begin() + static_cast<long>(len));
      rest = rest.subspan(len);
      rx.release_due(now_ns, deliver);
      rx.receive(frame, meta, now_ns, deliver);
      stack.poll(now_ns);
    }
    now_ns += 1'000'000'000;
    rx.release_due(now_ns, deliver);
    stack.poll(now_ns);
    stack.poll(now_ns + 1'000'000'000);
    check(stack.stats().count(NetCounter::kTxFrames) == port.sent);
  }
  check(port.outstanding() == 0);
  return 0;
}
