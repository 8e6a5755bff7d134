// herald-loadgen's flags (options.h): CLI11 for the syntax, validate() for the rules.
#include "tools/loadgen/options.h"

#include <arpa/inet.h>

#include <cmath>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"

namespace herald::tools::loadgen {
namespace {

constexpr std::string_view kScenarioNames[] = {"idle", "one-to-one", "group", "reconnect-storm",
                                               "offline-drain"};

absl::StatusOr<in_addr> parse_ipv4(std::string_view text) {
  in_addr a{};
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) {
    return absl::InvalidArgumentError("not an IPv4 address: '" + s + "'");
  }
  return a;
}

}  // namespace

std::string_view scenario_name(Scenario scenario) {
  return kScenarioNames[static_cast<size_t>(scenario)];
}

std::optional<Scenario> parse_scenario(std::string_view name) {
  for (size_t i = 0; i < std::size(kScenarioNames); ++i) {
    if (kScenarioNames[i] == name) return static_cast<Scenario>(i);
  }
  return std::nullopt;
}

absl::StatusOr<HostPort> parse_host_port(std::string_view text) {
  HostPort out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError("expected [v6]:port, got '" + std::string(text) + "'");
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError("expected host:port, got '" + std::string(text) + "'");
    }
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  uint32_t value = 0;
  if (!absl::SimpleAtoi(std::string(port), &value) || value == 0 || value > 65535) {
    return absl::InvalidArgumentError("bad port in '" + std::string(text) + "'");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

absl::StatusOr<std::pair<in_addr, uint8_t>> parse_address_prefix(std::string_view text) {
  const size_t slash = text.find('/');
  auto address = parse_ipv4(text.substr(0, slash));
  if (!address.ok()) return address.status();
  if (address->s_addr == 0) return absl::InvalidArgumentError("0.0.0.0 is not an address");
  uint32_t prefix = 24;
  if (slash != std::string_view::npos) {
    const std::string digits(text.substr(slash + 1));
    char* end = nullptr;
    prefix = static_cast<uint32_t>(std::strtoul(digits.c_str(), &end, 10));
    if (digits.empty() || *end != '\0' || prefix < 1 || prefix > 32) {
      return absl::InvalidArgumentError("prefix length must be 1..32 in '" + std::string(text) +
                                        "'");
    }
  }
  return std::pair{*address, static_cast<uint8_t>(prefix)};
}

absl::StatusOr<std::vector<in_addr>> parse_source_addresses(std::string_view text) {
  std::vector<in_addr> out;
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = text.substr(at, comma - at);
    if (item.empty()) return absl::InvalidArgumentError("empty item in source address list");
    const size_t dash = item.find('-');
    auto first = parse_ipv4(item.substr(0, dash));
    if (!first.ok()) return first.status();
    uint32_t low = ntohl(first->s_addr);
    uint32_t high = low;
    if (dash != std::string_view::npos) {
      auto last = parse_ipv4(item.substr(dash + 1));
      if (!last.ok()) return last.status();
      high = ntohl(last->s_addr);
      if (high < low) {
        return absl::InvalidArgumentError("reversed address range '" + std::string(item) + "'");
      }
    }
    if (high - low >= kMaxSourceAddresses || out.size() + (high - low + 1) > kMaxSourceAddresses) {
      return absl::InvalidArgumentError("more than " + std::to_string(kMaxSourceAddresses) +
                                        " source addresses");
    }
    for (uint64_t a = low; a <= high; ++a) out.push_back(in_addr{htonl(static_cast<uint32_t>(a))});
    at = comma + 1;
  }
  return out;
}

std::string phone_of(const Options& options, uint32_t index) {
  const uint64_t number = uint64_t{options.phone_offset} + index;
  std::string digits = std::to_string(number);
  // 11 digits after '+' (a North American number with the default prefix), at least 7 of them
  // the index.
  const size_t prefix_digits = options.phone_prefix.size() - 1;
  const size_t width = prefix_digits < 4 ? 11 - prefix_digits : 7;
  if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
  return options.phone_prefix + digits;
}

absl::Status validate(Options& o) {
  auto bad = [](const std::string& flag, const std::string& why) {
    return absl::InvalidArgumentError(flag + ": " + why);
  };
  if (o.connections < 2 || o.connections > kMaxConnections) {
    return bad("--connections", "must be in [2, " + std::to_string(kMaxConnections) + "]");
  }
  if (!o.dpdk_port.empty()) {
    // One stack on one port: one worker process, and no file descriptor per connection.
    if (o.processes == 0) o.processes = 1;
    if (o.processes != 1) return bad("--processes", "must be 1 with --dpdk-port");
    if (!o.source_addresses.empty()) {
      return bad("--source-addresses", "not with --dpdk-port (the stack has --dpdk-address)");
    }
    if (o.dpdk_address.s_addr == 0) return bad("--dpdk-address", "needed with --dpdk-port");
    if (o.dpdk_lcores.size() < 2) return bad("--dpdk-lcores", "two lcores: main and one more");
    if (o.dpdk_address_count < 1 || o.dpdk_address_count > 4096) {
      return bad("--dpdk-addresses", "must be in [1, 4096]");
    }
    if (o.dpdk_idle_sleep_us > 1'000'000) return bad("--dpdk-idle-sleep-us", "at most 1000000");
    if (o.dpdk_queues < 1 || o.dpdk_queues > 16) return bad("--dpdk-queues", "must be in [1, 16]");
  }
  const uint32_t needed =
      !o.dpdk_port.empty() ? 1
                           : (o.connections + kConnectionsPerProcess - 1) / kConnectionsPerProcess;
  if (o.processes == 0) o.processes = needed;
  if (o.processes > kMaxProcesses) {
    return bad("--processes", "at most " + std::to_string(kMaxProcesses));
  }
  if (o.processes > o.connections) return bad("--processes", "more processes than connections");
  if (o.dpdk_port.empty() &&
      (o.connections + o.processes - 1) / o.processes > kConnectionsPerProcess) {
    return bad("--processes", "at least " + std::to_string(needed) + " needed for " +
                                  std::to_string(o.connections) + " connections (" +
                                  std::to_string(kConnectionsPerProcess) +
                                  " per process: the fd limit)");
  }
  if (o.connect_concurrency == 0) return bad("--connect-concurrency", "must be > 0");
  if (!(o.rate_per_s >= 0) || o.rate_per_s > 1e8) return bad("--rate", "must be in [0, 1e8]");
  if ((o.scenario == Scenario::kOneToOne || o.scenario == Scenario::kGroup) && o.rate_per_s <= 0) {
    return bad("--rate", "must be > 0 for this scenario");
  }
  auto seconds = [&](double v, const char* flag, double min) -> absl::Status {
    if (!(v >= min) || v > 86400 * 7) {
      return bad(flag, "must be in [" + std::to_string(min) + ", 604800] seconds");
    }
    return absl::OkStatus();
  };
  for (absl::Status s :
       {seconds(o.duration_s, "--duration", 0), seconds(o.settle_timeout_s, "--settle-timeout", 0),
        seconds(o.connect_timeout_s, "--connect-timeout", 0.001),
        seconds(o.handshake_timeout_s, "--handshake-timeout", 0.001),
        seconds(o.storm_after_s, "--storm-after", 0)}) {
    if (!s.ok()) return s;
  }
  if (o.scenario == Scenario::kGroup) {
    if (o.group_size < 2) return bad("--group-size", "must be >= 2");
    if (o.group_size > o.connections) return bad("--group-size", "larger than --connections");
  }
  if (o.scenario == Scenario::kOfflineDrain) {
    if (o.messages_per_sender == 0) return bad("--messages", "must be > 0");
    if (o.connections % 2 != 0) {
      return bad("--connections", "offline-drain pairs senders with recipients: must be even");
    }
  }
  if (o.body_bytes < kMinBodyBytes || o.body_bytes > kMaxBodyBytes) {
    return bad("--body-bytes", "must be in [" + std::to_string(kMinBodyBytes) + ", " +
                                   std::to_string(kMaxBodyBytes) + "]");
  }
  if (o.window == 0 || o.window > 65535) return bad("--window", "must be in [1, 65535]");
  if (o.max_frame_bytes < 1024 || o.max_frame_bytes > (16u << 20)) {
    return bad("--max-frame-bytes", "must be in [1024, 16 MiB]");
  }
  if (o.phone_prefix.size() < 2 || o.phone_prefix[0] != '+' ||
      o.phone_prefix.find_first_not_of("0123456789", 1) != std::string::npos ||
      o.phone_prefix.size() > 9) {
    return bad("--phone-prefix", "'+' and 1 to 8 digits");
  }
  if (phone_of(o, o.connections - 1).size() > 16) {
    return bad("--phone-prefix", "numbers would be longer than E.164's 15 digits");
  }
  if (o.protocol == Protocol::kMqtt) {
    if (o.scenario != Scenario::kOneToOne && o.scenario != Scenario::kIdle) {
      return bad("--protocol", "mqtt runs the idle and one-to-one scenarios only");
    }
  }
  if (!o.ca_file.empty() && !o.chat_cert.empty()) {
    return bad("--ca-file", "give --ca-file or --chat-cert, not both");
  }
  if (o.admin_key_file.empty()) o.admin_key_file = o.data_dir + "/admin.key";
  if (o.chat_cert.empty() && o.ca_file.empty()) o.chat_cert = o.data_dir + "/tls/chat.crt";
  if (o.public_cert.empty()) o.public_cert = o.data_dir + "/tls/public.crt";
  return absl::OkStatus();
}

ParseOutcome parse_options(const std::vector<std::string>& args) {
  ParseOutcome out;
  Options& o = out.options;
  CLI::App app{
      "herald-loadgen: provisions accounts, opens TLS chat connections from many processes and "
      "runs a scenario, checking that every acked message arrives exactly once"};
  std::string scenario = "one-to-one";
  std::string protocol = "herald";
  std::string provisioning = "admin";
  std::string target = "127.0.0.1:5222";
  std::string admin = "127.0.0.1:8080";
  std::string public_api = "127.0.0.1:8443";
  std::string sources;
  app.add_option("--scenario", scenario,
                 "idle | one-to-one | group | reconnect-storm | offline-drain");
  app.add_option("--protocol", protocol, "herald | mqtt (MQTT 3.1.1 QoS 1 over TLS)");
  app.add_option("--provision", provisioning,
                 "admin (POST /v1/accounts/provision) | public (code, sms.log, verify, session)");
  app.add_option("--target", target, "chat (or MQTT broker) host:port, TLS");
  app.add_option("--admin", admin, "admin API host:port (plain HTTP)");
  app.add_option("--public", public_api, "public API host:port (--provision public)");
  app.add_option("--data-dir", o.data_dir, "the node's data dir (admin.key, certificates)");
  app.add_option("--admin-key-file", o.admin_key_file, "default <data-dir>/admin.key");
  app.add_option("--chat-cert", o.chat_cert, "pinned target certificate, PEM");
  app.add_option("--public-cert", o.public_cert, "pinned public API certificate, PEM");
  app.add_option("--ca-file", o.ca_file, "verify the target with this CA bundle instead");
  app.add_option("--server-name", o.server_name, "SNI and name check with --ca-file");
  app.add_option("--connections", o.connections, "accounts, one connection each");
  app.add_option("--processes", o.processes, "worker processes (default ceil(N/15000))");
  app.add_option("--source-addresses", sources, "e.g. 127.0.0.1-127.0.0.8 (round-robin)");
  app.add_option("--connect-concurrency", o.connect_concurrency,
                 "handshakes in flight per process");
  std::string dpdk_address;
  app.add_option("--dpdk-port", o.dpdk_port,
                 "run on Herald's TCP/IP stack on this DPDK port, e.g. "
                 "net_memif0,role=client,socket=/run/herald-memif.sock");
  app.add_option("--dpdk-address", dpdk_address, "--dpdk-port: our IPv4 address/prefix");
  app.add_option("--dpdk-addresses", o.dpdk_address_count,
                 "--dpdk-port: consecutive addresses from --dpdk-address to open from");
  app.add_option("--dpdk-lcores", o.dpdk_lcores, "--dpdk-port: EAL lcores (main first)")
      ->delimiter(',');
  app.add_option("--dpdk-memory-mb", o.dpdk_memory_mb,
                 "--dpdk-port: 0 uses huge pages, else --no-huge with this many MiB");
  app.add_option("--dpdk-idle-sleep-us", o.dpdk_idle_sleep_us,
                 "--dpdk-port: sleep of an idle poll loop");
  app.add_option("--dpdk-queues", o.dpdk_queues,
                 "--dpdk-port: queue pairs, the dataplane's workers (its worker i answers on i)");
  app.add_option("--rate", o.rate_per_s, "messages per second, all processes together");
  app.add_option("--duration", o.duration_s, "seconds of sending (idle: holding)");
  app.add_option("--settle-timeout", o.settle_timeout_s,
                 "seconds to wait for every acked message to be delivered");
  app.add_option("--connect-timeout", o.connect_timeout_s, "seconds for everyone to log in");
  app.add_option("--handshake-timeout", o.handshake_timeout_s, "seconds for one login");
  app.add_option("--storm-after", o.storm_after_s, "reconnect-storm: seconds before the drop");
  app.add_option("--group-size", o.group_size, "group: members per group");
  app.add_option("--messages", o.messages_per_sender, "offline-drain: messages per sender");
  app.add_option("--body-bytes", o.body_bytes, "message body size");
  app.add_option("--window", o.window, "unacked messages per client at most");
  app.add_option("--max-frame-bytes", o.max_frame_bytes, "largest frame accepted");
  app.add_option("--phone-prefix", o.phone_prefix, "accounts are <prefix><zero-padded index>");
  app.add_option("--phone-offset", o.phone_offset, "first account index");
  app.add_option("--device-name", o.device_name, "device name when provisioning");
  app.add_option("--seed", o.seed, "random seed (schedules, peers)");
  app.add_flag("--recheck-reconnect", o.recheck_reconnect,
               "after a settle timeout, reconnect everyone and settle again (counts `late`)");
  app.add_flag("--restarts-expected", o.restarts_expected,
               "the target restarts mid-run: duplicates are reported, only losses fail");
  app.add_flag("--json", o.json, "one JSON object on stdout");
  app.add_flag("--quiet", o.quiet, "no progress lines on stderr");

  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    out.exit_code = 0;
    out.message = app.help();
    return out;
  } catch (const CLI::ParseError& e) {
    out.exit_code = kExitUsage;
    out.message = std::string("herald-loadgen: ") + e.what();
    return out;
  }
  auto fail = [&](const std::string& why) {
    out.exit_code = kExitUsage;
    out.message = "herald-loadgen: " + why;
    return out;
  };
  auto s = parse_scenario(scenario);
  if (!s.has_value()) return fail("--scenario: unknown scenario '" + scenario + "'");
  o.scenario = *s;
  if (protocol == "herald") {
    o.protocol = Protocol::kHerald;
  } else if (protocol == "mqtt") {
    o.protocol = Protocol::kMqtt;
  } else {
    return fail("--protocol: 'herald' or 'mqtt', not '" + protocol + "'");
  }
  if (provisioning == "admin") {
    o.provisioning = Provisioning::kAdmin;
  } else if (provisioning == "public") {
    o.provisioning = Provisioning::kPublic;
  } else {
    return fail("--provision: 'admin' or 'public', not '" + provisioning + "'");
  }
  for (auto [text, field, flag] :
       {std::tuple{&target, &o.target, "--target"}, std::tuple{&admin, &o.admin, "--admin"},
        std::tuple{&public_api, &o.public_api, "--public"}}) {
    auto hp = parse_host_port(*text);
    if (!hp.ok()) return fail(std::string(flag) + ": " + std::string(hp.status().message()));
    *field = *hp;
  }
  if (!sources.empty()) {
    auto a = parse_source_addresses(sources);
    if (!a.ok()) return fail("--source-addresses: " + std::string(a.status().message()));
    o.source_addresses = std::move(*a);
  }
  if (!dpdk_address.empty()) {
    auto a = parse_address_prefix(dpdk_address);
    if (!a.ok()) return fail("--dpdk-address: " + std::string(a.status().message()));
    o.dpdk_address = a->first;
    o.dpdk_prefix_length = a->second;
  }
  if (absl::Status v = validate(o); !v.ok()) return fail(std::string(v.message()));
  return out;
}

}  // namespace herald::tools::loadgen
