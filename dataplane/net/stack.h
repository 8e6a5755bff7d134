// One instance of Herald's user-space network stack below TCP, per lcore and shared-nothing:
// Ethernet, ARP, IPv4 and ICMP, with L4 receivers above (l4.h) and a FramePort below
// (frame_io.h). Pure C++ (no DPDK), driven by the caller's time, so the same code runs on a
// port, in unit tests, fuzzers and simulations.
//
//   NetStack stack(options, port);        // options from the node config (validate() first)
//   stack.set_receiver(kIpProtocolTcp, &tcp);
//   stack.start(now_ns);                  // gratuitous ARP
//   loop: for each rx frame: stack.receive(frame, meta, now_ns);
//         stack.poll(now_ns);             // ARP retries and timeouts
//         port flushes what was queued
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "dataplane/net/arp_cache.h"
#include "dataplane/net/frame_io.h"
#include "dataplane/net/ip_address.h"
#include "dataplane/net/l4.h"
#include "dataplane/net/net_stats.h"
#include "dataplane/net/rate_limiter.h"

namespace herald::net {

struct NetOptions {
  MacAddress mac;
  IpAddress address;  // ours (IPv4)
  // Consecutive addresses from `address` that are all ours (ARP, IPv4, L4 sources): a client
  // stack opening more connections to one server port than one address has ephemeral ports
  // (herald-loadgen's DPDK mode). 1 for a server. All must sit in the on-link subnet.
  uint32_t address_count = 1;
  uint8_t prefix_length = 24;  // the on-link subnet
  IpAddress gateway;           // next hop for off-link destinations; none: on-link only
  uint32_t mtu_bytes = 1500;   // IP datagram, 68 .. 9000
  uint8_t ttl = 64;            // for what we send (RFC 1122 §3.2.1.7: never 0)
  uint8_t tos = 0;

  // ARP (RFC 826, RFC 1122 §2.3.2).
  uint32_t arp_entries = 1024;             // cache size; the least recently used is evicted
  uint32_t arp_reachable_ms = 60'000;      // a learned MAC is used this long
  uint32_t arp_refresh_before_ms = 5'000;  // a used entry is re-requested this long before
  uint32_t arp_retry_ms = 1'000;           // between requests for an unresolved address
  uint32_t arp_requests = 3;               // requests before resolution fails
  uint32_t arp_queue_per_entry = 8;        // frames waiting on one address
  uint32_t arp_queue_total = 1024;         // frames waiting on all addresses
  uint32_t arp_replies_per_second = 1000;  // answering requests for our address
  uint32_t arp_replies_burst = 100;
  bool gratuitous_arp = true;  // announce ourselves at start()

  // ICMP answers (RFC 1812 §4.3.2.8 rate limiting): 0 per second switches one off.
  uint32_t icmp_echo_per_second = 1000;
  uint32_t icmp_echo_burst = 50;
  uint32_t icmp_unreach_per_second = 100;
  uint32_t icmp_unreach_burst = 10;
};

// Empty when the options can be used, else what is wrong ("mtu_bytes must be 68..9000").
std::string validate(const NetOptions& options);

enum class RxVerdict : uint8_t {
  kDelivered,  // handed to an L4 receiver
  kAnswered,   // consumed by the stack (ARP, ICMP echo); any answer is queued on the port
  kDropped,    // counted under `reason`
};

struct RxResult {
  RxVerdict verdict = RxVerdict::kDropped;
  DropReason reason = DropReason::kNone;
};

class NetStack final : public L4Output {
 public:
  // `options` must pass validate() (checked). `port` must outlive the stack.
  NetStack(const NetOptions& options, FramePort& port);
  NetStack(const NetStack&) = delete;
  NetStack& operator=(const NetStack&) = delete;

  // The receiver for an IP protocol (kIpProtocolTcp, kIpProtocolUdp); nullptr removes it.
  // Without one, TCP gets protocol unreachable and UDP port unreachable (both rate-limited).
  void set_receiver(uint8_t protocol, L4Receiver* receiver);

  // Sends a gratuitous ARP request (RFC 5227 §3 announcement) when the options ask for one.
  void start(uint64_t now_ns);

  // Sends an ARP request for `neighbour` (its next hop) from each of our addresses, so it
  // learns all of them before the first segments: without it, a server answering a burst of
  // SYNs from a new address of ours parks its SYN-ACKs on ARP (a few per entry) and drops the
  // rest. Returns the requests sent (0: no route).
  uint32_t introduce_to(const IpAddress& neighbour);

  // One Ethernet frame from the port (valid for the call). Never crashes on any bytes.
  RxResult receive(std::span<const uint8_t> frame, const RxMeta& meta, uint64_t now_ns);

  // ARP retries and failures; call every loop turn (cheap when nothing waits on ARP).
  void poll(uint64_t now_ns);

  // L4Output (l4.h).
  IpAddress local_address() const override { return options_.address; }
  bool is_local(const IpAddress& address) const override {
    return address.is_v4() && ours(address.v4_host_order());
  }
  uint32_t max_l4_bytes() const override { return options_.mtu_bytes - 20; }
  [[nodiscard]] bool alloc(const IpAddress& destination, uint8_t protocol, uint32_t l4_bytes,
                           L4TxFrame* frame) override;
  [[nodiscard]] bool alloc_from(const IpAddress& source, const IpAddress& destination,
                                uint8_t protocol, uint32_t l4_bytes, L4TxFrame* frame) override;
  void send(L4TxFrame& frame, uint32_t l4_bytes, uint64_t now_ns) override;
  void abort(L4TxFrame& frame) override;

  const NetStats& stats() const { return stats_; }
  const NetOptions& options() const { return options_; }
  const ArpCache& arp_cache() const { return arp_; }
  // The MAC to use for `address` if resolved and fresh (tests, diagnostics).
  bool arp_lookup(const IpAddress& address, uint64_t now_ns, MacAddress* mac) const;

 private:
  RxResult drop(DropReason reason) {
    stats_.add(reason);
    return RxResult{RxVerdict::kDropped, reason};
  }

  // ethernet.cc
  bool alloc_frame(uint32_t length_bytes, TxFrame* frame);
  void write_eth(uint8_t* frame, const MacAddress& destination, uint16_t ether_type) const;
  void queue_frame(const TxFrame& frame, uint32_t length_bytes, const TxOffload& offload);

  // arp.cc
  // `replica`: learn only (RxMeta::replica); its rejections are not counted (the lcore that
  // received the frame counted them).
  RxResult arp_input(std::span<const uint8_t> arp, uint64_t now_ns, bool replica);
  // RxMeta::replica frames: an ARP frame for us at the link layer goes to arp_input as a
  // replica; anything else is ignored (only ARP is ever copied between lcores).
  RxResult arp_replica_input(std::span<const uint8_t> frame, uint64_t now_ns);
  // From `sender_ip` (one of ours: the one asked for, in a reply).
  void arp_send(uint16_t op, const MacAddress& eth_destination, const MacAddress& target_mac,
                uint32_t target_ip, uint32_t sender_ip);
  void arp_learn(uint32_t index, const MacAddress& mac, uint64_t now_ns);
  // Sends a frame built for `next_hop` (Ethernet destination blank), or parks it on ARP.
  void resolve_and_queue(uint32_t next_hop, const TxFrame& frame, uint32_t length_bytes,
                         const TxOffload& offload, uint64_t now_ns);

  // ipv4.cc
  RxResult ipv4_input(std::span<const uint8_t> ip, const RxMeta& meta, bool link_broadcast,
                      uint64_t now_ns);
  RxResult l4_input(std::span<const uint8_t> datagram, uint32_t header_bytes, const RxMeta& meta,
                    bool link_broadcast, uint64_t now_ns);
  bool next_hop(uint32_t destination, uint32_t* hop) const;
  // alloc() with the reason it failed (already counted), kNone on success.
  DropReason l4_alloc(const IpAddress& destination, uint8_t protocol, uint32_t l4_bytes,
                      L4TxFrame* frame);
  bool is_our_broadcast(uint32_t address) const;
  // One of our addresses (`address` .. `address + address_count - 1`).
  bool ours(uint32_t address) const { return address - our_ip_ < options_.address_count; }

  // icmp.cc
  RxResult icmp_input(std::span<const uint8_t> datagram, uint32_t header_bytes, uint64_t now_ns);
  // Destination unreachable about `datagram` (its IP header first) back to its source.
  void icmp_send_unreachable(std::span<const uint8_t> datagram, uint8_t code, uint64_t now_ns);

  NetOptions options_;
  FramePort& port_;
  PortCapabilities caps_;
  NetStats stats_;
  ArpCache arp_;
  RateLimiter arp_replies_;
  RateLimiter icmp_echo_;
  RateLimiter icmp_unreach_;
  L4Receiver* tcp_ = nullptr;
  L4Receiver* udp_ = nullptr;
  uint32_t our_ip_;
  uint32_t netmask_;
  uint16_t next_ip_id_ = 0;
  uint64_t next_arp_poll_ns_ = 0;
};

}  // namespace herald::net
