// herald-loadgen's command line: the flags, their defaults and their validation, apart from
// main() so the unit tests can check every rule (bad flags exit 64 with one clear line).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace herald::tools::loadgen {

enum class Scenario : uint8_t { kIdle, kOneToOne, kGroup, kReconnectStorm, kOfflineDrain };
enum class Protocol : uint8_t { kHerald, kMqtt };
enum class Provisioning : uint8_t { kAdmin, kPublic };

std::string_view scenario_name(Scenario scenario);
std::optional<Scenario> parse_scenario(std::string_view name);

// A "host:port" (IPv4 literal or "[v6]:port").
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
absl::StatusOr<HostPort> parse_host_port(std::string_view text);

// "127.0.0.1-127.0.0.8", "10.0.0.1,10.0.0.2" or a mix: IPv4 source addresses, in order.
// InvalidArgument for anything else, a reversed range, or more than kMaxSourceAddresses.
inline constexpr size_t kMaxSourceAddresses = 4096;
absl::StatusOr<std::vector<in_addr>> parse_source_addresses(std::string_view text);

// "10.77.0.2/24" (prefix 1..32) or "10.77.0.2" (/24): an address with its on-link prefix.
absl::StatusOr<std::pair<in_addr, uint8_t>> parse_address_prefix(std::string_view text);

// The file descriptors one process may hold (the machine's hard limit, which loadgen cannot
// raise), less a margin for the epoll fd, pipes and the admin calls.
inline constexpr uint32_t kConnectionsPerProcess = 15'000;
inline constexpr uint32_t kMaxProcesses = 64;
inline constexpr uint32_t kMaxConnections = 2'000'000;
inline constexpr uint32_t kMinBodyBytes = 32;  // the body header (message_body.h)
inline constexpr uint32_t kMaxBodyBytes = 60'000;

struct Options {
  Scenario scenario = Scenario::kOneToOne;
  Protocol protocol = Protocol::kHerald;
  Provisioning provisioning = Provisioning::kAdmin;

  HostPort target{"127.0.0.1", 5222};  // chat (or MQTT broker), TLS
  HostPort admin{"127.0.0.1", 8080};   // admin API, plain HTTP on loopback
  HostPort public_api{"127.0.0.1", 8443};
  std::string data_dir = "/var/lib/herald";
  std::string admin_key_file;  // default <data-dir>/admin.key
  std::string chat_cert;       // pinned; default <data-dir>/tls/chat.crt
  std::string public_cert;     // pinned; default <data-dir>/tls/public.crt
  std::string ca_file;         // verify the target with a CA bundle instead of pinning
  std::string server_name;     // SNI / name check with --ca-file

  uint32_t connections = 100;
  uint32_t processes = 0;  // 0: ceil(connections / kConnectionsPerProcess)
  std::vector<in_addr> source_addresses;
  uint32_t connect_concurrency = 1000;  // handshakes in flight per process

  // DPDK client mode (dpdk_network.h): the connections run on Herald's own TCP/IP stack on this
  // DPDK port ("net_memif0,role=client,socket=/run/herald-memif.sock"), not on kernel sockets;
  // one worker process, no file-descriptor bound. Empty: kernel sockets.
  std::string dpdk_port;
  in_addr dpdk_address{};  // the stack's own IPv4 address (--dpdk-address 10.77.0.2/24)
  uint8_t dpdk_prefix_length = 24;
  // Consecutive addresses from dpdk_address the stack owns and opens from in turn: each gives
  // about 28,000 connections to the one target port (a million needs 36).
  uint32_t dpdk_address_count = 1;
  std::vector<uint16_t> dpdk_lcores{
      0, 1};                    // the EAL's main lcore (the worker runs there), then one more
  uint32_t dpdk_memory_mb = 0;  // 0: huge pages; else --no-huge with this many MiB
  // Queue pairs on the port: the dataplane's worker count (its worker i answers on queue i).
  uint32_t dpdk_queues = 1;
  uint32_t dpdk_idle_sleep_us = 50;  // an idle poll loop sleeps this long (adaptive)

  double rate_per_s = 1000;  // one-to-one, group, reconnect-storm: total arrivals
  double duration_s = 10;    // send phase (idle: hold)
  double settle_timeout_s = 30;
  double connect_timeout_s = 120;   // until every connection is logged in
  double handshake_timeout_s = 10;  // one connection: TCP + TLS + login
  double storm_after_s = 2;         // reconnect-storm: hold before everyone drops
  uint32_t group_size = 10;
  uint32_t messages_per_sender = 10;  // offline-drain
  uint32_t body_bytes = 64;
  uint32_t window = 64;  // unacked messages per client (the server's limit caps it)
  uint32_t max_frame_bytes = 1u << 20;

  std::string phone_prefix = "+1555";
  uint32_t phone_offset = 0;
  std::string device_name = "loadgen";
  uint64_t seed = 1;
  // After a settle that timed out, drop and reconnect everyone once and settle again: tells
  // messages the server kept but did not push to an online device (they come with the next
  // login: `late`) from messages it lost.
  bool recheck_reconnect = false;
  // The target is killed and restarted during the run (the kill -9 tests). A retry that
  // crosses a dataplane restart can arrive under a second server_msg_id (the dedup window is
  // in memory; docs/PROTOCOL.md): such duplicates are still counted and reported, but only
  // lost messages fail the run. Clients show a message once per (sender, client_msg_id).
  bool restarts_expected = false;
  bool json = false;
  bool quiet = false;
};

// Where parsing left us: run with `options`, or exit with `exit_code` after printing
// `message` (to stdout for --help, else stderr).
struct ParseOutcome {
  Options options;
  std::optional<int> exit_code;
  std::string message;
};
inline constexpr int kExitUsage = 64;  // sysexits.h EX_USAGE

ParseOutcome parse_options(const std::vector<std::string>& args);
// Cross-flag rules (also run by parse_options): InvalidArgument naming the flag.
absl::Status validate(Options& options);

// Phone number of account `index`: prefix + the index zero-padded so the number has 11 digits
// after '+' (at least 7 digits of index).
std::string phone_of(const Options& options, uint32_t index);

}  // namespace herald::tools::loadgen
