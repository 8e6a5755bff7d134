// Config -> DpdkSettings -> EAL argv (dpdk_settings.h).
#include "dataplane/transport/dpdk/dpdk_settings.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"

namespace herald::dataplane::dpdk {

DpdkSettings settings_from_config(const config::Config& config) {
  const config::Dataplane& dp = config.dataplane();
  const config::Dpdk& d = *dp.dpdk();
  DpdkSettings s;
  s.lcores.assign(d.lcores()->begin(), d.lcores()->end());
  for (const auto* port : *d.ports()) s.ports.push_back(port->str());
  s.huge_pages = d.huge_pages();
  s.memory_mb = d.memory_mb();
  s.file_prefix = d.file_prefix()->str();
  s.rx_queues = d.rx_queues();
  s.tx_queues = d.tx_queues();
  s.rx_descriptors = d.rx_descriptors();
  s.tx_descriptors = d.tx_descriptors();
  s.burst_size = d.burst_size();
  s.mempool_cache_size = d.mempool_cache_size();
  s.mbufs_per_connection = d.mbufs_per_connection();
  s.promiscuous = d.promiscuous();
  switch (dp.poll_mode()) {
    case config::PollMode::busy: s.poll_mode = LoopPollMode::kBusy; break;
    case config::PollMode::adaptive: s.poll_mode = LoopPollMode::kAdaptive; break;
    case config::PollMode::blocking: s.poll_mode = LoopPollMode::kBlocking; break;
  }
  s.idle_polls = dp.adaptive_idle_polls();
  s.idle_sleep_us = d.idle_sleep_us();
  s.max_connections = config.limits().max_connections();
  for (const auto* arg : *dp.dpdk_eal_args()) s.extra_eal_args.push_back(arg->str());
  const config::DpdkImpairment& imp = *d.impairment();
  auto direction = [&](const config::DpdkImpairmentDirection& c, uint64_t seed) {
    net::ImpairmentOptions o;
    o.drop_ppm = c.drop_ppm();
    o.duplicate_ppm = c.duplicate_ppm();
    o.reorder_ppm = c.reorder_ppm();
    o.delay_ppm = c.delay_ppm();
    o.corrupt_ppm = c.corrupt_ppm();
    o.delay_us = c.delay_us();
    o.delay_jitter_us = c.delay_jitter_us();
    o.reorder_hold_us = c.reorder_hold_us();
    o.hold_frames = imp.hold_frames();
    o.seed = seed;
    return o;
  };
  // Distinct seeds: rx and tx must not hurt the same positions of their streams.
  s.impairment.rx = direction(*imp.rx(), imp.seed());
  s.impairment.tx = direction(*imp.tx(), imp.seed() + 1);
  return s;
}

std::vector<uint16_t> effective_lcores(const DpdkSettings& settings) {
  if (!settings.lcores.empty()) return settings.lcores;
  std::vector<uint16_t> lcores;
  for (uint16_t i = 0; i <= settings.rx_queues; ++i) lcores.push_back(i);
  return lcores;
}

bool is_pci_port(const std::string& port) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  std::string_view s = port;
  if (s.size() == 12) {
    if (s[4] != ':' || !hex(s[0]) || !hex(s[1]) || !hex(s[2]) || !hex(s[3])) return false;
    s.remove_prefix(5);
  }
  return s.size() == 7 && hex(s[0]) && hex(s[1]) && s[2] == ':' && hex(s[3]) && hex(s[4]) &&
         s[5] == '.' && s[6] >= '0' && s[6] <= '7';
}

std::string port_device_name(const std::string& port) {
  if (is_pci_port(port)) return port.size() == 7 ? "0000:" + port : port;
  return port.substr(0, port.find(','));
}

namespace {

// net_af_packet ignores the descriptor counts given at queue set-up: its rings are `framecnt`
// frames (512 by default), fixed when the device is created. Unless the port string sets it,
// the configured descriptors become the frame count, so rx_descriptors means the same ring
// depth on every port (a 512-frame ring overflows within milliseconds of a descheduled loop).
std::string with_ring_size(const std::string& port, const DpdkSettings& settings) {
  if (!port.starts_with("net_af_packet") || port.find("framecnt=") != std::string::npos) {
    return port;
  }
  return absl::StrCat(port,
                      ",framecnt=", std::max(settings.rx_descriptors, settings.tx_descriptors));
}

}  // namespace

std::vector<std::string> eal_arguments(const DpdkSettings& settings, unsigned cpus) {
  std::vector<std::string> args = {"herald-dataplane"};
  const std::vector<uint16_t> wanted = effective_lcores(settings);
  cpus = std::max(cpus, 1u);
  const bool fits =
      std::all_of(wanted.begin(), wanted.end(), [cpus](uint16_t lcore) { return lcore < cpus; });
  std::string lcores;
  for (uint16_t lcore : wanted) {
    absl::StrAppend(&lcores, lcores.empty() ? "" : ",", lcore);
    if (!fits) absl::StrAppend(&lcores, "@", lcore % cpus);
  }
  args.insert(args.end(),
              {fits ? "-l" : "--lcores", lcores, "--file-prefix", settings.file_prefix});
  if (!settings.huge_pages) {
    args.insert(args.end(), {"--no-huge", "-m", absl::StrCat(settings.memory_mb)});
  }
  bool any_pci = false;
  for (const std::string& port : settings.ports) {
    if (is_pci_port(port)) {
      args.insert(args.end(), {"-a", port});
      any_pci = true;
    } else {
      args.insert(args.end(), {"--vdev", with_ring_size(port, settings)});
    }
  }
  if (!any_pci) args.push_back("--no-pci");
  args.insert(args.end(), settings.extra_eal_args.begin(), settings.extra_eal_args.end());
  return args;
}

}  // namespace herald::dataplane::dpdk
