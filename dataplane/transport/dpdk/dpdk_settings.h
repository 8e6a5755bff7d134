// What the DPDK port layer needs from the node config (dataplane.dpdk, dataplane.poll_mode,
// limits.max_connections), as a plain struct tests can fill by hand, and the EAL argv made from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/net/impairment.h"
#include "platform/config/config.h"

namespace herald::dataplane::dpdk {

enum class LoopPollMode : uint8_t {
  kBusy,      // never sleeps: a dedicated, isolated core
  kAdaptive,  // after idle_polls empty polls, sleeps idle_sleep_us between polls
  kBlocking,  // sleeps after every empty poll (the port has no interrupt to wait on)
};

struct DpdkSettings {
  std::vector<uint16_t> lcores;  // empty: 0 plus 1..rx_queues
  std::vector<std::string> ports;
  bool huge_pages = true;
  uint32_t memory_mb = 512;
  std::string file_prefix = "herald";
  uint16_t rx_queues = 1;
  uint16_t tx_queues = 1;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  uint16_t burst_size = 32;
  uint16_t mempool_cache_size = 256;
  uint16_t mbufs_per_connection = 2;
  bool promiscuous = false;
  LoopPollMode poll_mode = LoopPollMode::kAdaptive;
  uint32_t idle_polls = 1000;
  uint32_t idle_sleep_us = 100;
  uint64_t max_connections = 100'000;
  std::vector<std::string> extra_eal_args;  // dataplane.dpdk_eal_args
  // dataplane.dpdk.impairment for the stack's port (rx seeded with `seed`, tx with seed + 1);
  // all zero = off. max_frame_bytes is left at its default: the transport raises it to the MTU.
  net::PortImpairmentOptions impairment;
};

// From a loaded (so already validated) config.
[[nodiscard]] DpdkSettings settings_from_config(const config::Config& config);

// The lcores the EAL gets: `lcores`, or 0..rx_queues when empty. The first is the main lcore.
[[nodiscard]] std::vector<uint16_t> effective_lcores(const DpdkSettings& settings);

// The EAL command line, argv[0] included: -l, --file-prefix, huge pages or --no-huge -m,
// -a for each PCI port and --no-pci when there is none (so a test never probes the host's
// NICs), --vdev for each virtual port, then the extra arguments. `cpus`: the machine's CPU
// count. An lcore id the machine has no CPU for (3 lcores for 2 workers on a 2-CPU box: the
// workers share CPUs in adaptive mode) is given as --lcores id@cpu with cpu = id mod cpus;
// otherwise -l as configured.
[[nodiscard]] std::vector<std::string> eal_arguments(const DpdkSettings& settings, unsigned cpus);

// True for "0000:01:00.0" / "01:00.0" (the config's rule); anything else is a vdev.
[[nodiscard]] bool is_pci_port(const std::string& port);

// The ethdev name DPDK gives a configured port: the vdev's name before its arguments, or the
// PCI address in its full "0000:01:00.0" form.
[[nodiscard]] std::string port_device_name(const std::string& port);

}  // namespace herald::dataplane::dpdk
