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
#include "dataplane/transport/dpdk/unmap_guard.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"
#include "rte_ethdev.h"
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
// While up, the link is looked at this often (rte_eth_link_get_nowait: a flag read for memif):
// a dataplane restart is noticed within 10 ms, at no cost to a busy loop.
constexpr uint64_t kLinkCheckNs = 10'000'000;
// While down, the loop sleeps this long between looks: no busy spin on a dead link.
constexpr uint64_t kLinkDownSleepNs = 10'000'000;
// memif's client connects only in dev_start and never again by itself: while down, the port is
// stopped and started until its server (the new dataplane) answers. A start that failed (no
// socket yet) is tried again soon; one that connected gets time for memif's handshake, which a
// dataplane busy starting up may answer late.
constexpr uint64_t kPortRestartFailedNs = 200'000'000;
constexpr uint64_t kPortRestartStartedNs = 3'000'000'000;
// At exit, RSTs go out in batches of at most this many (a quarter of the memif ring, under the
// smallest tx_slots), each confirmed by an ARP round trip before the next. Requests unanswered
// for kExitAbortAskAgainNs are sent again (one may be lost, or the dataplane slow: a loaded one
// took over a second for a batch, and moving on then overflowed its ring); once one answer is
// in, the batch's other answers get kExitAbortStragglerWaitNs (one lost to the dataplane's
// rate limit must not hold the exit up).
constexpr uint32_t kExitAbortBatch = 4096;
constexpr int64_t kExitAbortAskAgainNs = 1'000'000'000;
constexpr int64_t kExitAbortStragglerWaitNs = 50'000'000;
constexpr int64_t kExitAbortTimeoutNs = 60'000'000'000;

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
    // Queue pairs: as many as the dataplane has workers, whose worker i answers on its queue i
    // (a memif peer with fewer rings never gets those answers). One thread polls them all; the
    // runtime still wants an EAL lcore per queue (mapped onto the CPUs there are).
    settings.rx_queues = settings.tx_queues = static_cast<uint16_t>(o.dpdk_queues);
    while (settings.lcores.size() < size_t{o.dpdk_queues} + 1) {
      settings.lcores.push_back(static_cast<uint16_t>(settings.lcores.back() + 1));
    }
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
    // The run is over: every connection still open is reset (RST), so the dataplane frees its
    // session at once instead of holding it until an idle timeout, and neither side keeps a
    // FIN_WAIT / TIME_WAIT block. A FIN each (graceful) would cost a round trip and a block per
    // connection for nothing, and a million at once overflowed the stack's tx slots.
    if (transport_ != nullptr) abort_all_paced();
    tokens_.clear();
    report();           // drops the stack: what is left (closing, TIME-WAIT) ends silently
    poller_.offline();  // no burst from here; the port's shutdown may wait on the EAL's threads
    runtime_->shutdown();
  }

  absl::StatusOr<NetHandle> connect(uint64_t token) override {
    if (transport_ == nullptr) return absl::UnavailableError("link_down");
    const dp::ConnectionId id = transport_->connect(target_, target_port_);
    if (id == dp::kNoConnection) return absl::ResourceExhaustedError("connect_no_port_or_slot");
    tokens_[id] = Conn{.token = token};
    return static_cast<NetHandle>(id);
  }

  absl::StatusOr<size_t> send(NetHandle handle, std::span<const uint8_t> bytes) override {
    const auto id = static_cast<dp::ConnectionId>(handle);
    if (transport_ == nullptr || !tokens_.contains(id)) {
      return absl::UnavailableError("send_closed");
    }
    const size_t take = std::min<size_t>(bytes.size(), transport_->send_space(id));
    if (take == 0) return size_t{0};  // on_writable follows once the queue drains
    if (transport_->send(id, bytes.first(take)) != dp::SendResult::kOk) {
      return absl::UnavailableError("send_closed");
    }
    return take;
  }

  void close(NetHandle handle) override {
    const auto id = static_cast<dp::ConnectionId>(handle);
    if (tokens_.erase(id) == 0 || transport_ == nullptr) return;  // already ended
    transport_->close(id, dp::CloseMode::kGraceful);
  }

  void wait(int64_t timeout_ns, NetworkEvents& events) override {
    const uint64_t deadline_ns =
        clock_.now_ns() + static_cast<uint64_t>(std::max<int64_t>(0, timeout_ns));
    if (transport_ == nullptr) {
      wait_for_link(deadline_ns, events);
      return;
    }
    events_ = &events;
    delivered_ = 0;
    uint32_t idle_polls = 0;
    for (;;) {
      bool work = poll_loops();
      const uint64_t now = clock_.now_ns();
      if (now >= next_link_check_ns_) {
        next_link_check_ns_ = now + kLinkCheckNs;
        if (!runtime_->port(0).link().up) {
          events_ = nullptr;
          link_lost(events);
          return;
        }
      }
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
        dpdk::PmdPollerAsleep asleep(poller_);
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

  // What earlier stacks (before a link loss) counted, for report().
  struct Totals {
    uint64_t rx_packets = 0, tx_packets = 0, tx_ring_full_drops = 0, alloc_failures = 0;
    uint64_t tx_slots_exhausted = 0, segments_retransmitted = 0, rto_fired = 0;
  };

  DpdkNetwork(const WorkerPlan& plan, std::unique_ptr<dpdk::DpdkRuntime> runtime)
      : options_(*plan.options),
        connections_(plan.end - plan.begin),
        runtime_(std::move(runtime)),
        clock_(clock::Clock::monotonic()),
        idle_sleep_us_(plan.options->dpdk_idle_sleep_us) {
    target_ = net::IpAddress::v4(ntohl(plan.target.sin_addr.s_addr));
    target_port_ = ntohs(plan.target.sin_port);
    // TCP keeps one wheel timer per connection block, TIME-WAIT included.
    wheel_ = std::make_unique<timer::TimerWheel>(timer::TimerWheelConfig{
        .capacity = 2 * connections_ + 1024, .tick_ns = 1'000'000, .start_ns = clock_.now_ns()});
    build_stack();
  }

  // A fresh stack (transport and port loop) on the port whose link is up: at start, and each
  // time the link comes back. Fresh because the peer is: the restarted dataplane knows none of
  // our connections, and its MAC may be new (our ARP cache starts empty).
  void build_stack() {
    const Options& o = options_;
    const uint32_t connections = connections_;
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
    // One loop per queue pair, all feeding the one stack: frames may come back on any of them.
    // The dataplane's flow steering owns each connection on one worker whatever queue we send
    // on, so everything leaves on queue 0.
    for (uint16_t q = 0; q < runtime_->settings().rx_queues; ++q) {
      dpdk::LoopConfig lc;
      lc.queue = q;
      lc.burst_size = runtime_->settings().burst_size;
      lc.poll_mode = dpdk::LoopPollMode::kBusy;  // wait() sleeps by itself when idle
      loops_.push_back(std::make_unique<dpdk::PortLoop>(lc, runtime_->loop_ports(),
                                                        runtime_->mempool(), *transport_));
    }
    next_link_check_ns_ = clock_.now_ns() + kLinkCheckNs;
  }

  // A turn of every queue's loop; true when any did work.
  bool poll_loops() {
    poller_.quiescent();  // no PMD call of this thread is in progress here
    bool work = false;
    for (const auto& loop : loops_) work = loop->poll_once() || work;
    return work;
  }

  // Ends the stack without a frame on the wire: the transport's teardown builds its RSTs into
  // tx slots that are never flushed to the port. Its counters go into totals_ first.
  void drop_stack() {
    if (transport_ == nullptr) return;
    for (const auto& port_loop : loops_) {
      const dpdk::LoopStatsSnapshot loop = dpdk::snapshot(port_loop->stats());
      totals_.rx_packets += loop.rx_packets;
      totals_.tx_packets += loop.tx_packets;
      totals_.tx_ring_full_drops += loop.tx_ring_full_drops;
      totals_.alloc_failures += loop.alloc_failures;
    }
    const net::tcp::TcpStats& tcp = transport_->tcp_stats();
    totals_.tx_slots_exhausted += transport_->stats().tx_slots_exhausted;
    totals_.segments_retransmitted += tcp[net::tcp::TcpStats::segments_retransmitted];
    totals_.rto_fired += tcp[net::tcp::TcpStats::rto_fired];
    loops_.clear();
    transport_.reset();
  }

  // The link went down: the dataplane at its other end is gone (killed, restarting), and with
  // it every connection's other half. Nothing is sent (there is nobody to send to, and a
  // restarted dataplane answers any stale segment with a RST anyway): the stack is dropped
  // whole and every connection reported failed, so the engine reconnects each with backoff
  // once the link is back.
  void link_lost(NetworkEvents& events) {
    const int64_t now = mono_ns();
    std::vector<uint64_t> lost;
    lost.reserve(tokens_.size());
    for (const auto& [id, conn] : tokens_) lost.push_back(conn.token);
    tokens_.clear();
    events.on_link(false);  // first: connects stop, and the worker says it is reconnecting
    drop_stack();
    ++link_downs_;
    link_dropped_ += lost.size();
    link_down_ns_ = now;
    next_port_restart_ns_ = clock_.now_ns() + kPortRestartFailedNs;
    const int64_t dropped_ns = mono_ns();
    for (const uint64_t token : lost) events.on_failed(token, "link_down");
    std::fprintf(stderr,
                 "herald-loadgen: dpdk: link down: %zu connections dropped (stack %.3f s, "
                 "clients %.3f s)\n",
                 lost.size(), static_cast<double>(dropped_ns - now) / 1e9,
                 static_cast<double>(mono_ns() - dropped_ns) / 1e9);
  }

  // Link down: sleeps in kLinkDownSleepNs steps until the link is back (a new stack, on_link
  // true) or the deadline. memif's client end is stopped and started again meanwhile
  // (kPortRestart*Ns), since it connects to its server only when started.
  void wait_for_link(uint64_t deadline_ns, NetworkEvents& events) {
    for (;;) {
      const uint64_t now = clock_.now_ns();
      if (runtime_->port(0).link().up) {
        build_stack();
        std::fprintf(stderr, "herald-loadgen: dpdk: link up again after %.3f s\n",
                     static_cast<double>(mono_ns() - link_down_ns_) / 1e9);
        events.on_link(true);
        return;
      }
      if (now >= next_port_restart_ns_) {
        const uint16_t port_id = runtime_->port(0).port_id();
        dpdk::PmdPollerAsleep restarting(poller_);  // no burst here; stop may wait on EAL threads
        (void)rte_eth_dev_stop(port_id);
        const bool started = rte_eth_dev_start(port_id) == 0;
        ++port_restarts_;
        if (!started) ++port_restart_failures_;
        next_port_restart_ns_ =
            clock_.now_ns() + (started ? kPortRestartStartedNs : kPortRestartFailedNs);
        continue;  // look at the link at once
      }
      if (now >= deadline_ns) return;
      const uint64_t sleep_ns =
          std::min({deadline_ns - now, kLinkDownSleepNs, next_port_restart_ns_ - now});
      const timespec ts{0, static_cast<long>(sleep_ns)};
      dpdk::PmdPollerAsleep asleep(poller_);
      nanosleep(&ts, nullptr);
      ++sleeps_;
    }
  }

  // Resets every open connection, kExitAbortBatch at a time. Each batch ends with an ARP
  // request to the dataplane, and the next waits for its answer: the dataplane takes frames off
  // the memif ring in order, so the answer means it has handled every RST before it (closing a
  // session costs it far more than building a RST costs us, and the port's shutdown discards
  // whatever the ring still holds). Bounded by kExitAbortTimeoutNs: the rest end silently.
  void abort_all_paced() {
    std::vector<dp::ConnectionId> open;
    open.reserve(tokens_.size());
    for (const auto& [id, conn] : tokens_) open.push_back(id);
    tokens_.clear();
    const int64_t deadline_ns = mono_ns() + kExitAbortTimeoutNs;
    size_t at = 0;
    while (at < open.size() && mono_ns() < deadline_ns) {
      if (!runtime_->port(0).link().up) break;  // nobody to tell
      const size_t end = std::min(open.size(), at + kExitAbortBatch);
      for (; at < end; ++at) transport_->close(open[at], dp::CloseMode::kAbort);
      // Replies, not any learning: the dataplane's own requests (refreshing its entries for
      // our addresses) teach us too, and counting those let batches pile up on the ring.
      // introduce_to() asks from each of our addresses; every answer comes after the batch's
      // RSTs were handled. Waiting for all of them (not the first) keeps this batch's late
      // answers from confirming the next batch before the dataplane has seen it.
      auto replies = [&] {
        return transport_->net_stats().count(net::NetCounter::kArpRepliesReceived);
      };
      const uint64_t replies_before = replies();
      uint64_t asked = transport_->introduce_to(target_);
      int64_t asked_at_ns = mono_ns(), first_answer_ns = 0;
      uint32_t idle_polls = 0;
      while (runtime_->port(0).link().up) {
        const int64_t now_ns = mono_ns();
        if (now_ns >= deadline_ns) break;
        const uint64_t answered = replies() - replies_before;
        if (answered >= asked) break;
        if (answered > 0) {
          if (first_answer_ns == 0) first_answer_ns = now_ns;
          if (now_ns - first_answer_ns >= kExitAbortStragglerWaitNs) break;
        } else if (now_ns - asked_at_ns >= kExitAbortAskAgainNs) {
          asked += transport_->introduce_to(target_);
          asked_at_ns = now_ns;
          ++exit_reasks_;
        }
        if (poll_loops() || transport_->pending_tx_frames() > 0) {
          idle_polls = 0;
        } else if (++idle_polls >= kIdlePollsBeforeSleep) {
          idle_polls = 0;
          const timespec ts{0, 100'000};
          dpdk::PmdPollerAsleep asleep(poller_);
          nanosleep(&ts, nullptr);
        }
      }
      exit_resets_ = at;
    }
  }

  // Link losses too: how many, the connections they ended, the port restarts it took.
  void report() {
    drop_stack();  // its counters into totals_ (report() runs last)
    const Totals& t = totals_;
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    std::fprintf(stderr,
                 "herald-loadgen: dpdk stack: rx_packets %llu tx_packets %llu "
                 "tx_ring_full_drops %llu alloc_failures %llu tx_slots_exhausted %llu "
                 "segments_retransmitted %llu rto_fired %llu sleeps %llu link_downs %llu "
                 "link_dropped %llu port_restarts %llu port_restart_failures %llu "
                 "exit_resets %llu exit_arp_reasks %llu\n",
                 u(t.rx_packets), u(t.tx_packets), u(t.tx_ring_full_drops), u(t.alloc_failures),
                 u(t.tx_slots_exhausted), u(t.segments_retransmitted), u(t.rto_fired), u(sleeps_),
                 u(link_downs_), u(link_dropped_), u(port_restarts_), u(port_restart_failures_),
                 u(exit_resets_), u(exit_reasks_));
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

  const Options& options_;
  const uint32_t connections_;
  std::unique_ptr<dpdk::DpdkRuntime> runtime_;
  // This thread calls into the port's PMD (bursts in poll_loops, and tx bursts whenever the
  // engine's sends fill one): a dataplane that dies unmaps nothing under them (unmap_guard.h).
  dpdk::PmdPoller poller_;
  clock::Clock clock_;
  uint32_t idle_sleep_us_;
  net::IpAddress target_;
  uint16_t target_port_ = 0;
  std::unique_ptr<timer::TimerWheel> wheel_;
  std::unique_ptr<dpdk::DpdkTransport> transport_;
  std::vector<std::unique_ptr<dpdk::PortLoop>> loops_;  // one per queue pair, queue 0 first
  absl::flat_hash_map<dp::ConnectionId, Conn> tokens_;
  NetworkEvents* events_ = nullptr;
  uint64_t delivered_ = 0;
  uint64_t sleeps_ = 0;
  uint64_t next_link_check_ns_ = 0;
  uint64_t next_port_restart_ns_ = 0;
  int64_t link_down_ns_ = 0;
  uint64_t link_downs_ = 0;
  uint64_t link_dropped_ = 0;
  uint64_t port_restarts_ = 0;
  uint64_t port_restart_failures_ = 0;
  uint64_t exit_resets_ = 0;
  uint64_t exit_reasks_ = 0;  // times an exit batch went unanswered for 1 s and was asked again
  Totals totals_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClientNetwork>> make_dpdk_network(const WorkerPlan& plan) {
  return DpdkNetwork::create(plan);
}

}  // namespace herald::tools::loadgen
