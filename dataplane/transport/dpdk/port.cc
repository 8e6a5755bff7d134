// One DPDK ethdev port (port.h): setup from the config, offload discovery, counters, teardown.
#include "dataplane/transport/dpdk/port.h"

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "platform/log/log.h"

namespace herald::dataplane::dpdk {
namespace {

absl::Status dpdk_error(const PortConfig& config, const char* call, int rc) {
  return absl::InternalError(absl::StrCat("dpdk port ", config.index, " (", config.device, "): ",
                                          call, " failed: ", rte_strerror(-rc), " (", rc, ")"));
}

}  // namespace

absl::StatusOr<Port> Port::open(const PortConfig& config, rte_mempool* pool) {
  const std::string name = port_device_name(config.device);
  uint16_t port_id = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &port_id) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "dpdk port ", config.index, " (", config.device, "): no ethdev named \"", name,
        "\" was probed (a PCI device not bound to vfio-pci, or a vdev its driver refused)"));
  }
  Port port(config);
  port.port_id_ = port_id;

  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(port_id, &info); rc != 0) {
    return dpdk_error(config, "rte_eth_dev_info_get", rc);
  }
  port.driver_ = info.driver_name != nullptr ? info.driver_name : "";
  if (config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues) {
    return absl::InvalidArgumentError(
        absl::StrCat("dpdk port ", config.index, " (", config.device, "): ", config.rx_queues,
                     " rx / ", config.tx_queues, " tx queues asked, the driver ", port.driver_,
                     " has at most ", info.max_rx_queues, " / ", info.max_tx_queues));
  }

  // Checksum offloads: use what the port has; the loop does the rest in software.
  PortOffloads& off = port.offloads_;
  off.rx_ipv4_checksum = (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0;
  off.rx_tcp_checksum = (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TCP_CKSUM) != 0;
  off.rx_udp_checksum = (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_UDP_CKSUM) != 0;
  off.tx_ipv4_checksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
  off.tx_tcp_checksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) != 0;
  off.tx_udp_checksum = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM) != 0;

  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof(conf));
  conf.rxmode.offloads =
      info.rx_offload_capa &
      (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
  conf.txmode.offloads =
      info.tx_offload_capa &
      (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
  // Several rx queues: RSS where the driver has it with a key we can set, so the NIC puts each
  // flow on the queue our software steering names; without it (memif, af_packet, null) frames
  // arrive on any queue and the loops hand them to their owners (port_loop.h).
  const uint64_t rss_hash = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP;
  const bool hardware_rss =
      config.rx_queues > 1 && config.steering != nullptr &&
      (info.flow_type_rss_offloads & rss_hash) == rss_hash && info.hash_key_size == kRssKeyBytes &&
      info.reta_size >= config.steering->table_size() &&
      (info.reta_size & (info.reta_size - 1)) == 0 && info.reta_size <= RTE_ETH_RSS_RETA_SIZE_512;
  uint8_t rss_key[kRssKeyBytes];
  std::memcpy(rss_key, kSymmetricRssKey.data(), kRssKeyBytes);
  if (config.rx_queues > 1 && config.steering == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("dpdk port ", config.index, " (", config.device,
                                                   "): several rx queues need flow steering"));
  }
  if (hardware_rss) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = rss_key;
    conf.rx_adv_conf.rss_conf.rss_key_len = kRssKeyBytes;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_hash;
  }
  port.rx_spread_ = config.rx_queues == 1 ? RxSpread::kSingleQueue
                    : hardware_rss        ? RxSpread::kHardwareRss
                                          : RxSpread::kSoftware;
  if (int rc = rte_eth_dev_configure(port_id, config.rx_queues, config.tx_queues, &conf); rc != 0) {
    return dpdk_error(config, "rte_eth_dev_configure", rc);
  }
  uint16_t rx_desc = config.rx_descriptors;
  uint16_t tx_desc = config.tx_descriptors;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc); rc != 0) {
    return dpdk_error(config, "rte_eth_dev_adjust_nb_rx_tx_desc", rc);
  }
  port.rx_descriptors_ = rx_desc;
  port.tx_descriptors_ = tx_desc;
  const int socket = rte_eth_dev_socket_id(port_id);
  const unsigned socket_id = socket < 0 ? SOCKET_ID_ANY : static_cast<unsigned>(socket);
  for (uint16_t q = 0; q < config.rx_queues; ++q) {
    rte_eth_rxconf rxconf = info.default_rxconf;
    rxconf.offloads = conf.rxmode.offloads;
    if (int rc = rte_eth_rx_queue_setup(port_id, q, rx_desc, socket_id, &rxconf, pool); rc != 0) {
      return dpdk_error(config, "rte_eth_rx_queue_setup", rc);
    }
  }
  for (uint16_t q = 0; q < config.tx_queues; ++q) {
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    if (int rc = rte_eth_tx_queue_setup(port_id, q, tx_desc, socket_id, &txconf); rc != 0) {
      return dpdk_error(config, "rte_eth_tx_queue_setup", rc);
    }
  }
  if (int rc = rte_eth_dev_start(port_id); rc != 0) {
    return dpdk_error(config, "rte_eth_dev_start", rc);
  }
  port.started_ = true;
  if (hardware_rss) {
    // The NIC indexes its table with the hash's low bits, as FlowSteering does with fewer of
    // them: entry i is the steering table's entry i mod its size, so both name the same queue
    // for every hash (both sizes powers of two, the NIC's the larger).
    std::vector<rte_eth_rss_reta_entry64> reta((info.reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) /
                                               RTE_ETH_RETA_GROUP_SIZE);
    for (uint16_t i = 0; i < info.reta_size; ++i) {
      rte_eth_rss_reta_entry64& group = reta[i / RTE_ETH_RETA_GROUP_SIZE];
      group.mask |= uint64_t{1} << (i % RTE_ETH_RETA_GROUP_SIZE);
      group.reta[i % RTE_ETH_RETA_GROUP_SIZE] =
          config.steering->table()[i & (config.steering->table_size() - 1u)];
    }
    if (int rc = rte_eth_dev_rss_reta_update(port_id, reta.data(), info.reta_size); rc != 0) {
      return dpdk_error(config, "rte_eth_dev_rss_reta_update", rc);
    }
  }
  if (config.promiscuous) {
    // Some virtual drivers have no such mode (they see every frame anyway): say so, go on.
    if (int rc = rte_eth_promiscuous_enable(port_id); rc != 0) {
      HLOG_WARN("dpdk.port.promiscuous_unsupported")
          .kv("port", config.index)
          .kv("driver", port.driver_)
          .kv("error", std::string(rte_strerror(-rc)));
    }
  }
  port.promiscuous_ = rte_eth_promiscuous_get(port_id) == 1;
  rte_ether_addr mac;
  if (int rc = rte_eth_macaddr_get(port_id, &mac); rc != 0) {
    return dpdk_error(config, "rte_eth_macaddr_get", rc);
  }
  std::memcpy(port.mac_.data(), mac.addr_bytes, port.mac_.size());
  const LinkStatus link = port.link();
  HLOG_INFO("dpdk.port.started")
      .kv("port", config.index)
      .kv("device", config.device)
      .kv("port_id", port_id)
      .kv("driver", port.driver_)
      .kv("mac", port.mac_string())
      .kv("rx_queues", config.rx_queues)
      .kv("tx_queues", config.tx_queues)
      .kv("rx_descriptors", rx_desc)
      .kv("tx_descriptors", tx_desc)
      .kv("promiscuous", port.promiscuous_)
      .kv("rx_spread", std::string(port.rx_spread_ == RxSpread::kSingleQueue   ? "single_queue"
                                   : port.rx_spread_ == RxSpread::kHardwareRss ? "hardware_rss"
                                                                               : "software"))
      .kv("link_up", link.up)
      .kv("speed_mbps", link.speed_mbps)
      .kv("rx_cksum_ipv4", off.rx_ipv4_checksum)
      .kv("rx_cksum_tcp", off.rx_tcp_checksum)
      .kv("tx_cksum_ipv4", off.tx_ipv4_checksum)
      .kv("tx_cksum_tcp", off.tx_tcp_checksum);
  return port;
}

Port::Port(Port&& other) noexcept
    : config_(std::move(other.config_)),
      port_id_(std::exchange(other.port_id_, UINT16_MAX)),
      started_(std::exchange(other.started_, false)),
      driver_(std::move(other.driver_)),
      mac_(other.mac_),
      offloads_(other.offloads_),
      promiscuous_(other.promiscuous_),
      rx_spread_(other.rx_spread_),
      rx_descriptors_(other.rx_descriptors_),
      tx_descriptors_(other.tx_descriptors_) {}

Port::~Port() {
  if (port_id_ == UINT16_MAX) return;
  stop();
  rte_eth_dev_close(port_id_);
}

void Port::stop() {
  if (!started_) return;
  started_ = false;
  if (int rc = rte_eth_dev_stop(port_id_); rc != 0) {
    HLOG_WARN("dpdk.port.stop_failed")
        .kv("port", config_.index)
        .kv("error", std::string(rte_strerror(-rc)));
  }
}

std::string Port::mac_string() const {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", mac_[0], mac_[1], mac_[2], mac_[3],
                         mac_[4], mac_[5]);
}

LinkStatus Port::link() const {
  rte_eth_link link;
  std::memset(&link, 0, sizeof(link));
  if (rte_eth_link_get_nowait(port_id_, &link) != 0) return {};
  return LinkStatus{link.link_status == RTE_ETH_LINK_UP, link.link_speed,
                    link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX};
}

std::vector<std::pair<std::string, uint64_t>> Port::xstats() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  const int n = rte_eth_xstats_get_names(port_id_, nullptr, 0);
  if (n <= 0) return out;
  std::vector<rte_eth_xstat_name> names(static_cast<size_t>(n));
  std::vector<rte_eth_xstat> values(static_cast<size_t>(n));
  const int got_names = rte_eth_xstats_get_names(port_id_, names.data(), n);
  const int got = rte_eth_xstats_get(port_id_, values.data(), n);
  if (got_names != n || got != n) return out;
  out.reserve(static_cast<size_t>(n));
  for (const rte_eth_xstat& value : values) {
    if (value.id < names.size()) out.emplace_back(names[value.id].name, value.value);
  }
  return out;
}

bool Port::xstat(const std::string& name, uint64_t* value) const {
  uint64_t id = 0;
  if (rte_eth_xstats_get_id_by_name(port_id_, name.c_str(), &id) != 0) return false;
  return rte_eth_xstats_get_by_id(port_id_, &id, value, 1) == 1;
}

uint64_t Port::rx_nombuf() const {
  rte_eth_stats stats;
  if (rte_eth_stats_get(port_id_, &stats) != 0) return 0;
  return stats.rx_nombuf;
}

}  // namespace herald::dataplane::dpdk
