// Every reason the stack drops a frame (one X-macro table, VPP's tcp_error.def model) and its
// other counters; one NetStats per stack instance, written only by the owning lcore. The names
// are stable: they become dp.net.drop.<name> and dp.net.<name> in the counters segment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace herald::net {

// X(enumerator, "stable_name", "when")
#define HERALD_NET_DROPS(X)                                                                      \
  X(kEthTruncated, "eth_truncated", "frame shorter than an Ethernet header")                     \
  X(kEthNotOurMac, "eth_not_our_mac", "unicast to another MAC (a promiscuous port)")             \
  X(kEthMulticast, "eth_multicast", "multicast destination MAC: no groups are joined")           \
  X(kEthBadSource, "eth_bad_source", "source MAC is multicast or broadcast")                     \
  X(kEthVlan, "eth_vlan", "802.1Q/802.1ad tagged: VLANs are not supported yet")                  \
  X(kEthUnknownType, "eth_unknown_ethertype", "neither IPv4 nor ARP (IPv6 included, for now)")   \
  X(kArpTruncated, "arp_truncated", "shorter than an Ethernet/IPv4 ARP packet")                  \
  X(kArpUnsupported, "arp_unsupported", "hardware/protocol type or address lengths not ours")    \
  X(kArpBadOpcode, "arp_bad_opcode", "neither request nor reply")                                \
  X(kArpBadSender, "arp_bad_sender", "sender MAC group/zero or sender IP not a unicast host")    \
  X(kArpAddressConflict, "arp_address_conflict", "another MAC claims our IPv4 address")          \
  X(kArpNotForUs, "arp_not_for_us", "target is not us (a known sender is still refreshed)")      \
  X(kArpReplyRateLimited, "arp_reply_rate_limited", "request for us over the reply rate")        \
  X(kArpQueueFull, "arp_queue_full", "frame waiting on resolution: entry or total queue full")   \
  X(kArpResolutionFailed, "arp_resolution_failed", "waiting frame: no reply after all retries")  \
  X(kArpEvicted, "arp_evicted", "waiting frame: its entry was evicted for a newer one")          \
  X(kIpv4Truncated, "ipv4_truncated", "shorter than 20 bytes, the IHL, or the total length")     \
  X(kIpv4BadVersion, "ipv4_bad_version", "version field is not 4")                               \
  X(kIpv4BadIhl, "ipv4_bad_ihl", "IHL below 5")                                                  \
  X(kIpv4BadTotalLength, "ipv4_bad_total_length", "total length below the header length")        \
  X(kIpv4BadChecksum, "ipv4_bad_checksum", "header checksum wrong (software or port)")           \
  X(kIpv4Fragment, "ipv4_fragment", "MF set or offset non-zero: no reassembly")                  \
  X(kIpv4BadSource, "ipv4_bad_source", "source zero, loopback, multicast, broadcast or ours")    \
  X(kIpv4NotForUs, "ipv4_not_for_us", "unicast to another address: no forwarding")               \
  X(kIpv4Multicast, "ipv4_multicast", "multicast destination: no groups are joined")             \
  X(kIpv4Broadcast, "ipv4_broadcast", "limited or subnet broadcast: nothing listens")            \
  X(kIpv4UnknownProtocol, "ipv4_unknown_protocol", "no receiver for the protocol")               \
  X(kL4Truncated, "l4_truncated", "TCP/UDP shorter than its header or UDP length lies")          \
  X(kL4BadChecksum, "l4_bad_checksum", "TCP/UDP checksum wrong (software or port)")              \
  X(kUdpNoListener, "udp_no_listener", "UDP to us with no UDP receiver")                         \
  X(kIcmpTruncated, "icmp_truncated", "shorter than an ICMP header")                             \
  X(kIcmpBadChecksum, "icmp_bad_checksum", "ICMP checksum wrong")                                \
  X(kIcmpIgnoredType, "icmp_ignored_type", "anything but an echo request (errors not used yet)") \
  X(kIcmpEchoRateLimited, "icmp_echo_rate_limited", "echo request over the reply rate")          \
  X(kIcmpEchoTooBig, "icmp_echo_too_big", "the reply would not fit the MTU")                     \
  X(kTxAllocFailed, "tx_alloc_failed", "the port had no transmit buffer")                        \
  X(kTxTooBig, "tx_too_big", "datagram larger than the MTU allows")                              \
  X(kTxNoRoute, "tx_no_route", "destination not IPv4 unicast, or off-link with no gateway")

#define HERALD_NET_COUNTERS(X)                                                                \
  X(kRxFrames, "rx_frames", "frames given to the stack")                                      \
  X(kRxBytes, "rx_bytes", "their bytes")                                                      \
  X(kRxBroadcast, "rx_broadcast", "frames to the broadcast MAC")                              \
  X(kRxDelivered, "rx_delivered", "datagrams handed to an L4 receiver")                       \
  X(kRxIpv4Options, "rx_ipv4_options", "IPv4 headers with options (tolerated, skipped)")      \
  X(kTxFrames, "tx_frames", "frames queued on the port")                                      \
  X(kTxBytes, "tx_bytes", "their bytes")                                                      \
  X(kArpRequestsSent, "arp_requests_sent", "requests, gratuitous ones included")              \
  X(kArpRepliesSent, "arp_replies_sent", "replies for our address")                           \
  X(kArpRepliesReceived, "arp_replies_received", "replies to us (answers to our requests)")   \
  X(kArpLearned, "arp_learned", "entries created or refreshed from the wire")                 \
  X(kArpEvictions, "arp_evictions", "entries evicted (least recently used) for space")        \
  X(kArpQueued, "arp_queued", "frames that waited on resolution")                             \
  X(kArpReleased, "arp_released", "waiting frames sent once resolved")                        \
  X(kArpReplicas, "arp_replicas", "ARP frames another lcore received: learned, not answered") \
  X(kIcmpEchoReplies, "icmp_echo_replies", "echo replies sent")                               \
  X(kIcmpUnreachSent, "icmp_unreach_sent", "destination-unreachable messages sent")           \
  X(kIcmpUnreachSuppressed, "icmp_unreach_suppressed", "unreachables over the rate")

enum class DropReason : uint8_t {
#define HERALD_NET_ENUM(e, name, doc) e,
  HERALD_NET_DROPS(HERALD_NET_ENUM)
#undef HERALD_NET_ENUM
      kCount,
  kNone = kCount,  // not dropped
};
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

enum class NetCounter : uint8_t {
#define HERALD_NET_ENUM(e, name, doc) e,
  HERALD_NET_COUNTERS(HERALD_NET_ENUM)
#undef HERALD_NET_ENUM
      kCount,
};
inline constexpr size_t kNetCounterCount = static_cast<size_t>(NetCounter::kCount);

// "eth_truncated"; "none" for kNone.
std::string_view drop_reason_name(DropReason reason);
std::string_view net_counter_name(NetCounter counter);

// One per stack instance (per lcore); plain integers, single writer. Readers on other threads
// (the mirror into the counters segment) may see a torn-free but slightly stale value: each
// field is an aligned 64-bit word.
struct alignas(64) NetStats {
  uint64_t drops[kDropReasonCount] = {};
  uint64_t counters[kNetCounterCount] = {};

  uint64_t drop(DropReason r) const { return drops[static_cast<size_t>(r)]; }
  uint64_t count(NetCounter c) const { return counters[static_cast<size_t>(c)]; }
  void add(DropReason r) { ++drops[static_cast<size_t>(r)]; }
  void add(NetCounter c, uint64_t n = 1) { counters[static_cast<size_t>(c)] += n; }
  uint64_t total_drops() const {
    uint64_t total = 0;
    for (uint64_t d : drops) total += d;
    return total;
  }
};

}  // namespace herald::net
