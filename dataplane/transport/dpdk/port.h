// One DPDK ethdev port: configure, queue setup, start, promiscuous mode, MAC address, link
// status, checksum offload capabilities, counters (basic and extended), stop and close.
// Control path only (start-up, stats readers): nothing here runs per packet.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/transport/dpdk/flow_steering.h"
#include "dataplane/transport/dpdk/frame.h"

struct rte_mempool;

namespace herald::dataplane::dpdk {

struct PortConfig {
  std::string device;  // the configured string ("net_null0", "0000:01:00.0", ...)
  uint16_t index = 0;  // its position in dataplane.dpdk.ports
  uint16_t rx_queues = 1;
  uint16_t tx_queues = 1;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  bool promiscuous = false;
  // Several rx queues: the key and table the NIC's RSS is programmed with when it has RSS, so
  // that it puts a flow on the queue the loops' software steering says (null with one queue).
  const FlowSteering* steering = nullptr;
};

// How a port with several rx queues spreads flows over them.
enum class RxSpread : uint8_t {
  kSingleQueue,  // one rx queue
  kHardwareRss,  // the NIC hashes with our symmetric key and table: flows arrive on their loop
  kSoftware,     // no usable RSS (memif, af_packet, null): the loops hand frames to their owner
};

struct LinkStatus {
  bool up = false;
  uint32_t speed_mbps = 0;
  bool full_duplex = false;
};

class Port {
 public:
  // Finds the probed ethdev for `config.device`, configures it (with several rx queues, RSS with
  // the symmetric key and config.steering's table when the driver has RSS with a 40-byte key,
  // else software steering; the checksum offloads it has), sets up every queue on `pool`, starts
  // it and sets promiscuous mode. Errors name the port and the DPDK call.
  static absl::StatusOr<Port> open(const PortConfig& config, rte_mempool* pool);

  Port(Port&& other) noexcept;
  Port& operator=(Port&&) = delete;
  Port(const Port&) = delete;
  ~Port();  // stop() + close

  uint16_t port_id() const { return port_id_; }
  uint16_t index() const { return config_.index; }
  const PortConfig& config() const { return config_; }
  const std::string& driver() const { return driver_; }
  const std::array<uint8_t, 6>& mac() const { return mac_; }
  std::string mac_string() const;  // "02:00:00:00:00:01"
  const PortOffloads& offloads() const { return offloads_; }
  bool promiscuous() const { return promiscuous_; }
  RxSpread rx_spread() const { return rx_spread_; }
  // Descriptors per queue after the driver's adjustment (rte_eth_dev_adjust_nb_rx_tx_desc).
  uint16_t rx_descriptors() const { return rx_descriptors_; }
  uint16_t tx_descriptors() const { return tx_descriptors_; }

  LinkStatus link() const;  // without waiting
  // The driver's extended counters by name (rx_good_packets, rx_missed_errors, ...).
  std::vector<std::pair<std::string, uint64_t>> xstats() const;
  // One extended counter, or nullopt-like false when the driver has no such name.
  bool xstat(const std::string& name, uint64_t* value) const;
  // Mbuf allocation failures of the port's rx refill (rte_eth_stats.rx_nombuf).
  uint64_t rx_nombuf() const;

  // Stops the port (idempotent); the destructor also closes it.
  void stop();

 private:
  explicit Port(const PortConfig& config) : config_(config) {}

  PortConfig config_;
  uint16_t port_id_ = UINT16_MAX;  // UINT16_MAX: moved from, or not opened
  bool started_ = false;
  std::string driver_;
  std::array<uint8_t, 6> mac_{};
  PortOffloads offloads_;
  bool promiscuous_ = false;
  RxSpread rx_spread_ = RxSpread::kSingleQueue;
  uint16_t rx_descriptors_ = 0;
  uint16_t tx_descriptors_ = 0;
};

}  // namespace herald::dataplane::dpdk
