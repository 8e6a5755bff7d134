// herald-loadgen's DPDK client mode (dpdk_network.h): the dataplane's own port layer
// (DpdkRuntime, PortLoop) and stack (DpdkTransport's active opens) behind ClientNetwork.
#include "tools/loadgen/dpdk_network.h"

#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/dpdk_transport.h"
#include "dataplane/transport/dpdk/port_loop.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"
#include "tools/loadgen/engine.h"

namespace herald::tools::loadgen {
namespace {

namespace dp = herald::dataplane;
namespace dpdk = herald::dataplane::dpdk;

// Empty polls before an idle loop sleeps (--dpdk-idle-sleep-us each): short enough that an idle
// loadgen leaves the shared core to the dataplane, long enough that a busy one never sleeps.
constexpr uint32_t kIdlePollsBeforeSleep = 200;
// The TCP send queue per connection: a client sends at most what fits (never cut off), and is
// woken below a quarter of it.
constexpr uint32_t kSendQueueBytes = 256 * 1024;
constexpr int64_t kLinkUpTimeoutNs = 10'000'000'000;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// memif's rings are made by its client, this end: 2^14 slots each way instead of DPDK's 2^10,
// so a loadgen descheduled for a few milliseconds on a shared core does not overflow the
// dataplane's transmit ring (each dropped frame is a TCP resend). An explicit rsize= wins.
constexpr int kMemifLog2RingSize = 14;

std::string with_memif_ring_size(const std::string& port) {
  if (!port.starts_with("net_memif") || port.find("rsize=") != std::string::npos) return port;
  return port + ",rsize=" + std::to_string(kMemifLog2RingSize);
}

class DpdkNetwork final : public ClientNetwork, private dp::TransportEvents {
 public:
  static absl::StatusOr<std::unique_ptr<ClientNetwork>> create(const WorkerPlan& plan) {
    const Options& o = *plan.options;
    // The stack refuses (aborts on) options validate() rejects: say so as a setup error first.
    net::NetOptions addresses;
    addresses.address = net::IpAddress::v4(ntohl(o.dpdk_address.s_addr));
    addresses.prefix_length = o.dpdk_prefix_length;
    addresses.address_count = o.dpdk_address_count;
    addresses.mac.bytes = {0x02, 0, 0, 0, 0, 1};  // any unicast MAC: the port's comes later
    if (const std::string bad = net::validate(addresses); !bad.empty()) {
      return absl::InvalidArgumentError("--dpdk-address/--dpdk-addresses: " + bad);
    }
    dpdk::DpdkSettings settings;
    settings.lcores = o.dpdk_lcores;
    settings.ports = {with_memif_ring_size(o.dpdk_port)};
    settings.huge_pages = o.dpdk_memory_mb == 0;
    if (o.dpdk_memory_mb != 0) settings.memory_mb = o.dpdk_memory_mb;
    // A prefix of our own: the dataplane on the same host has its own EAL runtime directory.
    settings.file_prefix = "herald-loadgen-" + std::to_string(getpid());
    // No mbuf per connection: the stack copies what it receives into TCP's buffers and builds
    // frames only to send them, so the pool is the rings, bursts and caches (mempool_sizing.h).
    settings.max_connections = std::max<uint64_t>(plan.end - plan.begin, 1024);
    settings.mbufs_per_connection = 0;
    auto runtime = dpdk::DpdkRuntime::start(settings);
    if (!runtime.ok()) return runtime.status();
    // memif connects to its server asynchronously: frames sent before the link is up are lost
    // (the first ARP request with them, and every SYN would wait a whole RTO).
    const int64_t deadline_ns = mono_ns() + kLinkUpTimeoutNs;
    while (!(*runtime)->port(0).link().up) {
      if (mono_ns() >= deadline_ns) {
        return absl::UnavailableError(
            "dpdk: the port's link did not come up within 10 s (is "
            "the dataplane's memif server port on that socket?)");
      }
      const timespec ts{0, 10'000'000};
      nanosleep(&ts, nullptr);
    }
    std::unique_ptr<DpdkNetwork> net(new DpdkNetwork(plan, std::move(*runtime)));
    return std::unique_ptr<ClientNetwork>(std::move(net));
  }

  ~DpdkNetwork() override {
    report();
    // RSTs for what is still open go out before the port stops; the runtime then closes it.
    tokens_.clear();
    transport_->stop();
    for (int i = 0; i < 10 && loop_->poll_once(); ++i) {
    }
    loop_.reset();
    transport_.reset();
    runtime_->shutdown();
  }

  absl::StatusOr<NetHandle> connect(uint64_t token) override {
    const dp::ConnectionId id = transport_->connect(target_, target_port_);
    if (id == dp::kNoConnection) return absl::ResourceExhaustedError("connect_no_port_or_slot");
    tokens_[id] = Conn{.token = token};
    return static_cast<NetHandle>(id);
  }

  absl::StatusOr<size_t> send(NetHandle handle, std::span<const uint8_t> bytes) override {
    const auto id = static_cast<dp::ConnectionId>(handle);
    if (!tokens_.contains(id)) return absl::UnavailableError("send_closed");
    const size_t take = std::min<size_t>(bytes.size(), transport_->send_space(id));
    if (take == 0) return size_t{0};  // on_writable follows once the queue drains
    if (transport_->send(id, bytes.first(take)) != dp::SendResult::kOk) {
      return absl::UnavailableError("send_closed");
    }
    return take;
  }

  void close(NetHandle handle) override {
    const auto id = static_cast<dp::ConnectionId>(handle);
    if (tokens_.erase(id) == 0) return;  // already ended (on_failed delivered)
    transport_->close(id, dp::CloseMode::kGraceful);
  }

  void wait(int64_t timeout_ns, NetworkEvents& events) override {
    events_ = &events;
    delivered_ = 0;
    const uint64_t deadline_ns =
        clock_.now_ns() + static_cast<uint64_t>(std::max<int64_t>(0, timeout_ns));
    uint32_t idle_polls = 0;
    for (;;) {
      bool work = loop_->poll_once();
      const uint64_t now = clock_.now_ns();
      work = wheel_->advance(now) > 0 || work;
      // What the events' handlers queued goes out on the next poll, before we return.
      const bool tx_pending = transport_->pending_tx_frames() > 0;
      if ((delivered_ > 0 && !tx_pending) || now >= deadline_ns) break;
      if (work || tx_pending) {
        idle_polls = 0;
        continue;
      }
      if (++idle_polls < kIdlePollsBeforeSleep) continue;
      idle_polls = 0;
      const uint64_t next = std::min(deadline_ns, wheel_->next_wakeup_ns());
      const uint64_t sleep_ns =
          next <= now ? 0 : std::min<uint64_t>(next - now, uint64_t{idle_sleep_us_} * 1000);
      if (sleep_ns > 0) {
        const timespec ts{0, static_cast<long>(sleep_ns)};
        nanosleep(&ts, nullptr);
        ++sleeps_;
      }
    }
    events_ = nullptr;
  }

 private:
  struct Conn {
    uint64_t token = 0;
    bool connected = false;
  };

  DpdkNetwork(const WorkerPlan& plan, std::unique_ptr<dpdk::DpdkRuntime> runtime)
      : runtime_(std::move(runtime)),
        clock_(clock::Clock::monotonic()),
        idle_sleep_us_(plan.options->dpdk_idle_sleep_us) {
    const Options& o = *plan.options;
    const uint32_t connections = plan.end - plan.begin;
    target_ = net::IpAddress::v4(ntohl(plan.target.sin_addr.s_addr));
    target_port_ = ntohs(plan.target.sin_port);
    // TCP keeps one wheel timer per connection block, TIME-WAIT included.
    wheel_ = std::make_unique<timer::TimerWheel>(timer::TimerWheelConfig{
        .capacity = 2 * connections + 1024, .tick_ns = 1'000'000, .start_ns = clock_.now_ns()});
    dpdk::DpdkTransportOptions t;
    t.net.address = net::IpAddress::v4(ntohl(o.dpdk_address.s_addr));
    t.net.prefix_length = o.dpdk_prefix_length;
    t.net.address_count = o.dpdk_address_count;
    t.net.mac.bytes = runtime_->port(0).mac();
    // Every SYN of the first connect burst waits on the one ARP resolution of the target.
    t.net.arp_queue_per_entry = std::max<uint32_t>(o.connect_concurrency, 8);
    t.net.arp_queue_total = t.net.arp_queue_per_entry + 1024;
    // A connect burst puts a ClientHello (and its ACKs) per connection on the port at once.
    t.tx_slots = t.net.arp_queue_total + 8 * o.connect_concurrency + 8192;
    t.port = 0;  // no listener: a client
    // Dropped connections close gracefully and stay until their FIN is acked: room for a whole
    // reconnect storm's worth of them beside the new ones.
    t.limits.max_connections = 2 * connections + 16;
    t.limits.send_queue_bytes = kSendQueueBytes;
    t.limits.send_low_water_bytes = kSendQueueBytes / 4;
    transport_ = std::make_unique<dpdk::DpdkTransport>(t, clock_, *wheel_);
    transport_->start(*this);
    // The dataplane learns every address of ours before the first SYN (and we its MAC).
    (void)transport_->introduce_to(target_);
    dpdk::LoopConfig lc;
    lc.queue = 0;
    lc.burst_size = runtime_->settings().burst_size;
    lc.poll_mode = dpdk::LoopPollMode::kBusy;  // wait() sleeps by itself when idle
    loop_ = std::make_unique<dpdk::PortLoop>(lc, runtime_->loop_ports(), runtime_->mempool(),
                                             *transport_);
  }

  // The client stack's own losses and resends, one line on stderr: a figure taken with this
  // mode is only as good as the loadgen's side of the link.
  void report() const {
    using net::tcp::TcpStats;
    const dpdk::LoopStatsSnapshot loop = dpdk::snapshot(loop_->stats());
    const TcpStats& tcp = transport_->tcp_stats();
    std::fprintf(stderr,
                 "herald-loadgen: dpdk stack: rx_packets %llu tx_packets %llu "
                 "tx_ring_full_drops %llu alloc_failures %llu tx_slots_exhausted %llu "
                 "segments_retransmitted %llu rto_fired %llu sleeps %llu\n",
                 static_cast<unsigned long long>(loop.rx_packets),
                 static_cast<unsigned long long>(loop.tx_packets),
                 static_cast<unsigned long long>(loop.tx_ring_full_drops),
                 static_cast<unsigned long long>(loop.alloc_failures),
                 static_cast<unsigned long long>(transport_->stats().tx_slots_exhausted),
                 static_cast<unsigned long long>(tcp[TcpStats::segments_retransmitted]),
                 static_cast<unsigned long long>(tcp[TcpStats::rto_fired]),
                 static_cast<unsigned long long>(sleeps_));
  }

  // TransportEvents: from inside wait() only (poll_once, the wheel), per network.h.
  void on_accepted(dp::ConnectionId id, const dp::PeerAddress& /*peer*/) override {
    transport_->close(id, dp::CloseMode::kAbort);  // never listening: cannot happen
  }
  void on_connected(dp::ConnectionId id) override {
    auto it = tokens_.find(id);
    if (it == tokens_.end() || events_ == nullptr) return;
    it->second.connected = true;
    ++delivered_;
    events_->on_connected(it->second.token);
  }
  void on_data(dp::ConnectionId id, std::span<const uint8_t> bytes) override {
    auto it = tokens_.find(id);
    if (it == tokens_.end() || events_ == nullptr) return;
    ++delivered_;
    events_->on_data(it->second.token, bytes);
  }
  void on_writable(dp::ConnectionId id) override {
    auto it = tokens_.find(id);
    if (it == tokens_.end() || events_ == nullptr) return;
    ++delivered_;
    events_->on_writable(it->second.token);
  }
  void on_closed(dp::ConnectionId id, dp::CloseReason reason) override {
    auto it = tokens_.find(id);
    if (it == tokens_.end()) return;  // closed by us: nobody waits for it
    const Conn conn = it->second;
    tokens_.erase(it);
    if (events_ == nullptr) return;
    ++delivered_;
    // The transport answers a FIN with its own and reports the end as peer_closed: for the
    // engine that is end of stream (what recv() == 0 is on a socket).
    if (reason == dp::CloseReason::kPeerClosed) {
      events_->on_eof(conn.token);
      return;
    }
    const std::string name = dp::close_reason_name(reason);
    events_->on_failed(conn.token, conn.connected ? name : "connect_" + name);
  }

  std::unique_ptr<dpdk::DpdkRuntime> runtime_;
  clock::Clock clock_;
  uint32_t idle_sleep_us_;
  net::IpAddress target_;
  uint16_t target_port_ = 0;
  std::unique_ptr<timer::TimerWheel> wheel_;
  std::unique_ptr<dpdk::DpdkTransport> transport_;
  std::unique_ptr<dpdk::PortLoop> loop_;
  absl::flat_hash_map<dp::ConnectionId, Conn> tokens_;
  NetworkEvents* events_ = nullptr;
  uint64_t delivered_ = 0;
  uint64_t sleeps_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClientNetwork>> make_dpdk_network(const WorkerPlan& plan) {
  return DpdkNetwork::create(plan);
}

}  // namespace herald::tools::loadgen
