// herald-tcpbulk: bulk TCP over Herald's own DPDK stack (DpdkTransport: NetStack + TcpEngine,
// no TLS), for interop tests and throughput figures against Linux. See tools/tcpbulk/README.md.
#include <arpa/inet.h>
#include <openssl/sha.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/net/net_stats.h"
#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/dpdk_transport.h"
#include "dataplane/transport/dpdk/port_loop.h"
#include "platform/clock/clock.h"
#include "platform/config/config.h"
#include "platform/timer/timer_wheel.h"

namespace herald::tools::tcpbulk {
namespace {

using dataplane::CloseMode;
using dataplane::CloseReason;
using dataplane::ConnectionId;
using dataplane::PeerAddress;
using dataplane::SendResult;
namespace dpdk = dataplane::dpdk;

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

enum class Mode { kSink, kSource, kEcho };

struct Args {
  std::string config_path;  // a node config (dataplane.dpdk.*); else the flags below make one
  std::string port;
  std::string address;  // a.b.c.d/len
  std::string gateway = "0.0.0.0";
  std::string file_prefix;
  uint32_t memory_mb = 256;
  std::vector<std::string> impair;  // key=value under dataplane.dpdk.impairment
  std::string poll_mode = "adaptive";
  uint16_t listen_port = 5001;
  std::string mode = "sink";
  uint64_t bytes = 0;  // source: bytes sent per connection
  uint64_t seed = 1;   // source: the pattern's seed
  uint32_t connections = 1;
  uint64_t pause_after_bytes = 0;  // sink: stop reading once this many bytes arrived ...
  uint32_t pause_ms = 0;           // ... for this long (the peer sees a zero window)
  uint32_t send_buffer_bytes = 1 << 20;
  uint32_t recv_buffer_bytes = 1 << 20;
  uint32_t min_rto_ms = 1000;
  uint32_t timeout_s = 120;
};

// The bytes a source sends: splitmix64 words from the seed, little-endian, any length.
class Pattern {
 public:
  explicit Pattern(uint64_t seed) : state_(seed) {}
  void fill(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (left_ == 0) {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        word_ = z ^ (z >> 31);
        left_ = 8;
      }
      out[i] = static_cast<uint8_t>(word_);
      word_ >>= 8;
      --left_;
    }
  }

 private:
  uint64_t state_;
  uint64_t word_ = 0;
  int left_ = 0;
};

std::string hex(const uint8_t* bytes, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 15]);
  }
  return out;
}

std::string counters_json(const dpdk::DpdkTransport& t, const dpdk::PortLoop& loop) {
  std::string out = "\"tcp\":{";
  const auto& tcp = t.tcp_stats();
  for (uint32_t i = 0; i < net::tcp::TcpStats::kCount; ++i) {
    const auto idx = static_cast<net::tcp::TcpStats::Index>(i);
    absl::StrAppend(&out, i ? "," : "", "\"", net::tcp::TcpStats::name(idx), "\":", tcp[idx]);
  }
  absl::StrAppend(&out, "},\"net_drop\":{");
  const net::NetStats& ns = t.net_stats();
  bool first = true;
  for (size_t i = 0; i < net::kDropReasonCount; ++i) {
    const auto r = static_cast<net::DropReason>(i);
    if (ns.drop(r) == 0) continue;  // ~40 reasons: only those that happened
    absl::StrAppend(&out, first ? "" : ",", "\"", std::string(net::drop_reason_name(r)),
                    "\":", ns.drop(r));
    first = false;
  }
  auto impair = [&](const char* name, const net::ImpairmentStats& s) {
    absl::StrAppend(&out, "},\"", name, "\":{");
    for (size_t i = 0; i < net::kImpairmentCount; ++i) {
      const auto k = static_cast<net::Impairment>(i);
      absl::StrAppend(&out, i ? "," : "", "\"", std::string(net::impairment_name(k)),
                      "\":", s.count(k));
    }
  };
  impair("impair_rx", t.rx_impairment_stats());
  impair("impair_tx", t.tx_impairment_stats());
  const dpdk::LoopStatsSnapshot ls = dpdk::snapshot(loop.stats());
  absl::StrAppend(&out, "},\"loop\":{\"rx_packets\":", ls.rx_packets,
                  ",\"tx_packets\":", ls.tx_packets,
                  ",\"tx_ring_full_drops\":", ls.tx_ring_full_drops,
                  ",\"alloc_failures\":", ls.alloc_failures, ",\"sleeps\":", ls.sleeps,
                  "},\"transport\":{\"tx_slots_exhausted\":", t.stats().tx_slots_exhausted,
                  ",\"tx_batch_refused\":", t.stats().tx_batch_refused, "}");
  return out;
}

// The application on top of the Transport: one of sink / source / echo per connection.
class Bulk final : public dataplane::TransportEvents {
 public:
  Bulk(const Args& args, Mode mode, dpdk::DpdkTransport& t, const clock::Clock& clock)
      : args_(args), mode_(mode), t_(t), clock_(clock) {}

  void set_loop(const dpdk::PortLoop* loop) { loop_ = loop; }
  uint32_t finished() const { return finished_; }
  bool failed() const { return failed_; }

  void on_accepted(ConnectionId id, const PeerAddress& peer) override {
    Conn& c = conns_[id];
    SHA256_Init(&c.sha);
    c.start_ns = clock_.now_ns();
    c.pattern = std::make_unique<Pattern>(args_.seed);
    char text[INET_ADDRSTRLEN] = "?";
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&peer.address);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    c.peer = absl::StrCat(text, ":", ntohs(sin->sin_port));
    if (mode_ == Mode::kSource) fill(id, c);
  }

  void on_data(ConnectionId id, std::span<const uint8_t> bytes) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    c.received += bytes.size();
    SHA256_Update(&c.sha, bytes.data(), bytes.size());
    if (mode_ == Mode::kEcho) {
      c.echo_pending.insert(c.echo_pending.end(), bytes.begin(), bytes.end());
      drain_echo(id, c);
    }
    if (mode_ == Mode::kSink && args_.pause_ms > 0 && !c.paused_once &&
        c.received >= args_.pause_after_bytes) {
      c.paused_once = true;
      c.resume_at_ns = clock_.now_ns() + uint64_t{args_.pause_ms} * 1'000'000;
      t_.set_reading(id, false);
    }
  }

  void on_writable(ConnectionId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    if (mode_ == Mode::kSource) fill(id, it->second);
    if (mode_ == Mode::kEcho) drain_echo(id, it->second);
  }

  void on_closed(ConnectionId id, CloseReason reason) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    const double seconds = static_cast<double>(clock_.now_ns() - c.start_ns) / 1e9;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, mode_ == Mode::kSource ? &c.sent_sha : &c.sha);
    const uint64_t bytes = mode_ == Mode::kSource ? c.sent : c.received;
    // A source is complete only when every byte was queued before the end; the peer's own
    // digest proves they arrived.
    const bool ok = mode_ == Mode::kSource
                        ? c.sent == args_.bytes && reason == CloseReason::kLocalClose
                        : reason == CloseReason::kPeerClosed || reason == CloseReason::kLocalClose;
    if (!ok) failed_ = true;
    std::string line = absl::StrCat(
        "{\"mode\":\"", args_.mode, "\",\"peer\":\"", c.peer, "\",\"bytes\":", bytes,
        ",\"seconds\":", seconds, ",\"mbit_s\":", seconds > 0 ? bytes * 8 / seconds / 1e6 : 0.0,
        ",\"sha256\":\"", hex(digest, sizeof(digest)), "\",\"close\":\"",
        dataplane::close_reason_name(reason), "\",\"ok\":", ok ? "true" : "false",
        ",\"paused\":", c.paused_once ? "true" : "false", ",");
    if (loop_ != nullptr) absl::StrAppend(&line, counters_json(t_, *loop_));
    absl::StrAppend(&line, "}\n");
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    conns_.erase(it);
    ++finished_;
  }

  // Resumes reading on connections whose pause is over.
  void tick(uint64_t now_ns) {
    for (auto& [id, c] : conns_) {
      if (c.resume_at_ns != 0 && now_ns >= c.resume_at_ns) {
        c.resume_at_ns = 0;
        t_.set_reading(id, true);
      }
    }
  }

 private:
  struct Conn {
    SHA256_CTX sha;       // bytes received
    SHA256_CTX sent_sha;  // bytes sent (source)
    bool sent_sha_init = false;
    uint64_t start_ns = 0;
    uint64_t received = 0;
    uint64_t sent = 0;
    bool closing = false;
    bool paused_once = false;
    uint64_t resume_at_ns = 0;
    std::unique_ptr<Pattern> pattern;
    std::vector<uint8_t> echo_pending;
    std::string peer;
  };

  // Free room in the transport's queue: sending past it would reset the connection.
  uint32_t room(ConnectionId id) const {
    const uint32_t queued = t_.queued_bytes(id);
    return queued >= args_.send_buffer_bytes ? 0 : args_.send_buffer_bytes - queued;
  }

  void fill(ConnectionId id, Conn& c) {
    if (!c.sent_sha_init) {
      SHA256_Init(&c.sent_sha);
      c.sent_sha_init = true;
    }
    uint8_t chunk[64 * 1024];
    while (c.sent < args_.bytes) {
      const uint64_t n = std::min<uint64_t>({room(id), sizeof(chunk), args_.bytes - c.sent});
      if (n == 0) return;  // on_writable brings us back
      c.pattern->fill(chunk, n);
      if (t_.send(id, std::span<const uint8_t>(chunk, n)) != SendResult::kOk) return;
      SHA256_Update(&c.sent_sha, chunk, n);
      c.sent += n;
    }
    if (!c.closing) {
      c.closing = true;
      t_.close(id, CloseMode::kGraceful);  // after the queued bytes: FIN
    }
  }

  void drain_echo(ConnectionId id, Conn& c) {
    const uint32_t n = std::min<uint64_t>(room(id), c.echo_pending.size());
    if (n > 0 &&
        t_.send(id, std::span<const uint8_t>(c.echo_pending.data(), n)) == SendResult::kOk) {
      c.echo_pending.erase(c.echo_pending.begin(), c.echo_pending.begin() + n);
    }
    // Back-pressure: stop reading while the peer does not take our echo.
    t_.set_reading(id, c.echo_pending.size() < args_.send_buffer_bytes);
  }

  const Args& args_;
  const Mode mode_;
  dpdk::DpdkTransport& t_;
  const clock::Clock& clock_;
  const dpdk::PortLoop* loop_ = nullptr;
  std::map<ConnectionId, Conn> conns_;
  uint32_t finished_ = 0;
  bool failed_ = false;
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  return out + "\"";
}

// The flags as a node config, so the loader checks them (ranges, field names in errors) and
// settings_from_config reads them exactly as the dataplane does.
absl::StatusOr<config::Config> config_from_flags(const Args& a) {
  if (!a.config_path.empty()) return config::load_config(a.config_path);
  const std::vector<std::string> addr = absl::StrSplit(a.address, '/');
  if (a.port.empty() || addr.size() != 2) {
    return absl::InvalidArgumentError("--port and --address a.b.c.d/len (or --config) are needed");
  }
  std::string rx, tx, top;
  for (const std::string& kv : a.impair) {
    const std::vector<std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.size() != 2 || p[1].empty() ||
        p[1].find_first_not_of("0123456789") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--impair ", kv, ": expected key=number, e.g. rx.drop_ppm=10000"));
    }
    std::string* into = &top;
    std::string key = p[0];
    if (key.rfind("rx.", 0) == 0 || key.rfind("tx.", 0) == 0) {
      into = key[0] == 'r' ? &rx : &tx;
      key = key.substr(3);
    }
    absl::StrAppend(into, into->empty() ? "" : ",", json_string(key), ":", p[1]);
  }
  const std::string prefix =
      a.file_prefix.empty() ? absl::StrCat("tcpbulk", getpid()) : a.file_prefix;
  const std::string json =
      absl::StrCat("{\"dataplane\":{\"backend\":\"dpdk\",\"poll_mode\":", json_string(a.poll_mode),
                   ",\"adaptive_idle_polls\":200,\"dpdk\":{\"ports\":[", json_string(a.port),
                   "],\"huge_pages\":false,\"memory_mb\":", a.memory_mb,
                   ",\"file_prefix\":", json_string(prefix), ",\"address\":", json_string(addr[0]),
                   ",\"prefix_length\":", addr[1], ",\"gateway\":", json_string(a.gateway),
                   ",\"rx_descriptors\":1024,\"tx_descriptors\":1024,\"mempool_cache_size\":32,"
                   "\"impairment\":{",
                   top, top.empty() ? "" : ",", "\"rx\":{", rx, "},\"tx\":{", tx,
                   "}}}},\"limits\":{\"max_connections\":64}}");
  return config::load_config_from_string(json, "herald-tcpbulk flags");
}

int run(const Args& args) {
  Mode mode;
  if (args.mode == "sink") {
    mode = Mode::kSink;
  } else if (args.mode == "source") {
    mode = Mode::kSource;
  } else if (args.mode == "echo") {
    mode = Mode::kEcho;
  } else {
    std::fprintf(stderr, "--mode must be sink, source or echo\n");
    return 2;
  }
  absl::StatusOr<config::Config> cfg = config_from_flags(args);
  if (!cfg.ok()) {
    std::fprintf(stderr, "herald-tcpbulk: %s\n", cfg.status().ToString().c_str());
    return 2;
  }
  const dpdk::DpdkSettings settings = dpdk::settings_from_config(*cfg);
  const config::Dpdk& d = *cfg->dataplane().dpdk();
  dpdk::DpdkTransportOptions options;
  in_addr a{};
  if (inet_pton(AF_INET, d.address()->c_str(), &a) != 1 || a.s_addr == 0) {
    std::fprintf(stderr, "herald-tcpbulk: dataplane.dpdk.address is needed\n");
    return 2;
  }
  options.net.address = net::IpAddress::v4(ntohl(a.s_addr));
  options.net.prefix_length = d.prefix_length();
  if (inet_pton(AF_INET, d.gateway()->c_str(), &a) == 1 && a.s_addr != 0) {
    options.net.gateway = net::IpAddress::v4(ntohl(a.s_addr));
  }
  options.port = args.listen_port;
  options.impairment = settings.impairment;
  options.limits.send_queue_bytes = args.send_buffer_bytes;
  options.limits.send_low_water_bytes = args.send_buffer_bytes / 2;
  options.limits.max_connections = static_cast<uint32_t>(settings.max_connections);
  options.tcp.recv_buffer_bytes = args.recv_buffer_bytes;
  options.tcp.min_rto_ms = args.min_rto_ms;
  options.tcp.initial_rto_ms = std::max<uint64_t>(args.min_rto_ms, 1000);

  // rte_eal_init pins this thread to the main lcore; keep the process's own affinity (2 cores
  // shared with the Linux peer), as the dataplane does.
  cpu_set_t affinity;
  CPU_ZERO(&affinity);
  const bool saved = sched_getaffinity(0, sizeof(affinity), &affinity) == 0;
  auto runtime = dpdk::DpdkRuntime::start(settings);
  if (saved) (void)sched_setaffinity(0, sizeof(affinity), &affinity);
  if (!runtime.ok()) {
    std::fprintf(stderr, "herald-tcpbulk: %s\n", runtime.status().ToString().c_str());
    return 1;
  }
  if ((*runtime)->port_count() != 1) {
    std::fprintf(stderr, "herald-tcpbulk: exactly one port is needed\n");
    return 2;
  }
  options.net.mac.bytes = (*runtime)->port(0).mac();

  const clock::Clock clock = clock::Clock::monotonic();
  int rc = 0;
  {
    timer::TimerWheel wheel(timer::TimerWheelConfig{
        .capacity = 4096, .tick_ns = 1'000'000, .start_ns = clock.now_ns()});
    dpdk::DpdkTransport transport(options, clock, wheel);
    Bulk bulk(args, mode, transport, clock);
    dpdk::LoopConfig lc;
    lc.burst_size = settings.burst_size;
    lc.poll_mode = settings.poll_mode;
    lc.idle_polls = settings.idle_polls;
    lc.idle_sleep_us = settings.idle_sleep_us;
    dpdk::PortLoop loop(lc, (*runtime)->loop_ports(), (*runtime)->mempool(), transport);
    bulk.set_loop(&loop);
    transport.start(bulk);
    std::fprintf(stderr, "herald-tcpbulk: listening on %s:%u (%s)\n", d.address()->c_str(),
                 args.listen_port, args.mode.c_str());
    const uint64_t deadline_ns = clock.now_ns() + uint64_t{args.timeout_s} * 1'000'000'000;
    uint32_t idle_turns = 0;
    // The worker's turn, as dataplane/worker.cc runs it: port, timers, application; adaptive
    // idling (pause, then bounded sleeps) since this machine's cores are shared.
    while (!g_stop.load() && bulk.finished() < args.connections) {
      bool work = loop.poll_once();
      const uint64_t now = clock.now_ns();
      if (wheel.advance(now) > 0) work = true;  // timers fired: their output goes next turn
      bulk.tick(now);  // a paused sink is not work: the loop may sleep meanwhile
      work = work || transport.pending_tx_frames() > 0;
      if (now > deadline_ns) {
        std::fprintf(stderr, "herald-tcpbulk: timed out after %u s\n", args.timeout_s);
        rc = 3;
        break;
      }
      if (work) {
        idle_turns = 0;
        continue;
      }
      ++idle_turns;
      if (settings.poll_mode == dpdk::LoopPollMode::kBusy ||
          (settings.poll_mode == dpdk::LoopPollMode::kAdaptive &&
           idle_turns < settings.idle_polls)) {
        continue;
      }
      timespec ts{0, static_cast<long>(settings.idle_sleep_us) * 1000};
      nanosleep(&ts, nullptr);
    }
    if (rc == 0 && bulk.failed()) rc = 1;
    transport.stop();
    (void)loop.poll_once();  // RSTs for what stop() ended
  }
  (*runtime)->shutdown();
  return rc;
}

}  // namespace
}  // namespace herald::tools::tcpbulk

int main(int argc, char** argv) {
  using herald::tools::tcpbulk::Args;
  Args args;
  CLI::App app{"herald-tcpbulk: bulk TCP over Herald's DPDK stack (sink, source, echo)"};
  app.add_option("--config", args.config_path, "node config (dataplane.dpdk.*) instead of flags");
  app.add_option("--port", args.port, "DPDK port, e.g. net_af_packet0,iface=veth0");
  app.add_option("--address", args.address, "the stack's IPv4 address/prefix, e.g. 10.0.0.1/24");
  app.add_option("--gateway", args.gateway, "next hop for off-link peers");
  app.add_option("--file-prefix", args.file_prefix, "EAL --file-prefix (default tcpbulk<pid>)");
  app.add_option("--memory-mb", args.memory_mb, "EAL memory (--no-huge)");
  app.add_option("--impair", args.impair,
                 "dataplane.dpdk.impairment key=value: seed, hold_frames, rx.|tx. + drop_ppm, "
                 "duplicate_ppm, reorder_ppm, delay_ppm, corrupt_ppm, delay_us, "
                 "delay_jitter_us, reorder_hold_us");
  app.add_option("--poll-mode", args.poll_mode, "busy | adaptive | blocking");
  app.add_option("--listen-port", args.listen_port, "TCP port to listen on");
  app.add_option("--mode", args.mode, "sink | source | echo");
  app.add_option("--bytes", args.bytes, "source: bytes to send per connection");
  app.add_option("--seed", args.seed, "source: pattern seed");
  app.add_option("--connections", args.connections, "exit after this many connections ended");
  app.add_option("--pause-after-bytes", args.pause_after_bytes, "sink: pause reading after");
  app.add_option("--pause-ms", args.pause_ms, "sink: pause reading this long (zero window)");
  app.add_option("--send-buffer-bytes", args.send_buffer_bytes, "per-connection send queue");
  app.add_option("--recv-buffer-bytes", args.recv_buffer_bytes, "per-connection receive buffer");
  app.add_option("--min-rto-ms", args.min_rto_ms, "TCP's minimum RTO (RFC 6298: 1000)");
  app.add_option("--timeout-s", args.timeout_s, "give up (exit 3) after this long");
  CLI11_PARSE(app, argc, argv);
  signal(SIGINT, herald::tools::tcpbulk::on_signal);
  signal(SIGTERM, herald::tools::tcpbulk::on_signal);
  return herald::tools::tcpbulk::run(args);
}
