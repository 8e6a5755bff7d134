// A dataplane worker: its parts, built on its own thread, and the run-to-completion loop.
#include "dataplane/worker.h"

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "dataplane/routing/router.h"
#include "dataplane/routing/store_client.h"
#include "dataplane/session/session_layer.h"
#include "dataplane/session/session_options.h"
#include "dataplane/stats_mirror.h"
#include "dataplane/tls/tls_layer.h"
#include "dataplane/transport/dpdk/dpdk_runtime.h"
#include "dataplane/transport/dpdk/dpdk_transport.h"
#include "dataplane/transport/dpdk/port_loop.h"
#include "dataplane/transport/dpdk/unmap_guard.h"
#include "dataplane/transport/kernel/kernel_transport.h"
#include "platform/auth/token_verifier.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"
#include "platform/shm/doorbell.h"
#include "platform/timer/timer_wheel.h"
#include "platform/uring/event_loop.h"

namespace herald::dataplane {
namespace {

// How long a sleeping worker waits at most before looking at its timers again.
constexpr uint64_t kMaxSleepNs = 100'000'000;

uint64_t unix_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// A persistent poll on an eventfd that drains it when it fires: it only wakes the loop.
struct EventfdWatch {
  uring::Operation op;
  int fd = -1;
  bool armed = false;
  static void on_ready(uring::Operation& op, const uring::Completion&) {
    auto* self = op.context_as<EventfdWatch>();
    if (self->fd >= 0) (void)shm::Doorbell::drain_eventfd(self->fd);
  }
  void arm(uring::EventLoop& loop, int watched_fd) {
    fd = watched_fd;
    op.set_callback(&EventfdWatch::on_ready, this);
    loop.poll(op, fd, POLLIN, /*persistent=*/true);
    armed = true;
  }
  void disarm(uring::EventLoop& loop) {
    if (armed) (void)loop.cancel(op);
    armed = false;
    fd = -1;
  }
};

routing::WorkerRouterOptions router_options_from_config(const config::Config& config,
                                                        uint16_t worker, uint16_t workers,
                                                        int64_t unix_offset_ms,
                                                        uint64_t instance_id) {
  routing::WorkerRouterOptions o;
  o.node_id = config.node().id();
  o.worker = worker;
  o.workers = workers;
  o.unix_offset_ms = unix_offset_ms;
  // Device-list answers name the dataplane instance that asked (ones left on a ring from
  // before a restart are ignored).
  o.device_lists.instance_id = instance_id;
  const auto& limits = config.limits();
  // The window must cover the unacked limit, or a pending entry could be evicted.
  o.dedup.window_per_device = std::max(limits.dedup_window(), limits.max_unacked_messages());
  o.groups.max_group_members = limits.max_group_members();
  // A primary device and its linked ones.
  o.device_lists.max_devices_per_account = limits.max_linked_devices() + 1;
  o.drain_queue_bytes = std::max<uint32_t>(limits.send_queue_bytes_per_session() / 4, 16 * 1024);
  return o;
}

// backend dpdk: the stack's options for worker `index` from dataplane.dpdk and the port's MAC.
absl::StatusOr<dpdk::DpdkTransportOptions> dpdk_transport_options(const config::Config& config,
                                                                  const dpdk::DpdkRuntime& rt,
                                                                  uint16_t index) {
  const auto& dp = config.dataplane();
  const auto& d = *dp.dpdk();
  auto v4 = [](const flatbuffers::String* text, net::IpAddress* out) {
    in_addr a{};
    if (inet_pton(AF_INET, text->c_str(), &a) != 1) return false;
    *out = net::IpAddress::v4(ntohl(a.s_addr));
    return true;
  };
  dpdk::DpdkTransportOptions o;
  if (rt.port_count() != 1) {
    return absl::InvalidArgumentError(
        "backend dpdk: the stack is bound to one port (dataplane.dpdk.ports must list one)");
  }
  if (!v4(d.address(), &o.net.address) || o.net.address.v4_host_order() == 0) {
    return absl::InvalidArgumentError(
        "backend dpdk needs dataplane.dpdk.address (the stack's own IPv4 address)");
  }
  o.net.prefix_length = d.prefix_length();
  net::IpAddress gateway;
  if (v4(d.gateway(), &gateway) && gateway.v4_host_order() != 0) o.net.gateway = gateway;
  o.net.mac.bytes = rt.port(0).mac();
  net::IpAddress listen;
  if (!v4(dp.listen_address(), &listen)) {
    return absl::InvalidArgumentError("backend dpdk: dataplane.listen_address must be IPv4");
  }
  if (listen.v4_host_order() != 0 && listen != o.net.address) {
    return absl::InvalidArgumentError(
        "backend dpdk: dataplane.listen_address must be 0.0.0.0 or dataplane.dpdk.address");
  }
  o.listen = listen;
  o.port = dp.chat_port();
  o.port_index = 0;
  o.impairment = rt.settings().impairment;  // dataplane.dpdk.impairment (off by default)
  o.tcp.congestion_control = d.congestion_control() == config::CongestionControl::newreno
                                 ? net::tcp::CongestionControl::kNewReno
                                 : net::tcp::CongestionControl::kCubic;
  o.tcp.buffer_pool_bytes = uint64_t{d.tcp_buffer_pool_mb()} << 20;
  o.tcp.buffer_cache_bytes = uint64_t{d.tcp_buffer_cache_mb()} << 20;
  o.tcp.syn_queue = d.syn_queue();
  o.tcp.accept_backlog = d.accept_backlog();
  // Several workers on the port: this one's active opens land on its own queue.
  o.steering = rt.flow_steering();
  o.queue = index;
  return o;
}

}  // namespace

struct Worker::Parts {
  std::unique_ptr<uring::EventLoop> loop;
  // Before the transports: TCP (dpdk) cancels its timers on it when destroyed.
  std::unique_ptr<timer::TimerWheel> wheel;
  std::unique_ptr<KernelTransport> transport;  // backend kernel
  // backend dpdk: the stack behind the Transport, and this worker's port loop (queue = index)
  // polled from the worker's own loop.
  std::unique_ptr<dpdk::DpdkTransport> dpdk_transport;
  std::unique_ptr<dpdk::PortLoop> port_loop;
  Transport* active = nullptr;  // whichever of the two
  std::unique_ptr<TlsLayer> tls;
  std::unique_ptr<auth::TokenVerifier> verifier;
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<routing::WorkerRouter> router;
  std::unique_ptr<SessionLayer> sessions;
  std::unique_ptr<StatsMirror> mirror;  // dp.* into the link's counters segment
  WorkerStatsScratch mirror_scratch;
  EventfdWatch wake;
  EventfdWatch store_doorbell;
  EventfdWatch mesh_doorbell;
  std::shared_ptr<const ipc::ControlPlaneLink> link;
  uint64_t link_generation = 0;
};

Worker::Worker(WorkerSetup setup) : setup_(std::move(setup)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Worker::~Worker() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Worker::set_link(std::shared_ptr<const ipc::ControlPlaneLink> link) {
  {
    std::lock_guard<std::mutex> lock(link_mu_);
    pending_link_ = std::move(link);
  }
  link_generation_.fetch_add(1, std::memory_order_release);
  const uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof(one));
}

void Worker::stop() {
  stop_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof(one));
}

absl::Status Worker::run() {
  absl::Status status = run_loop();
  if (!status.ok()) status_.failed.store(true);
  return status;
}

absl::Status Worker::run_loop() {
  const config::Config& config = *setup_.config;
  const auto& dp = config.dataplane();
  if (setup_.pin_core >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(setup_.pin_core, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
      HLOG_WARN("dataplane.worker.pin_failed").kv("worker", uint64_t{setup_.index});
    }
  }
  Parts parts;
  // The loop is driven by hand below (poll_once / run_once), so its own mode is blocking.
  uring::Options loop_options;
  loop_options.name = "dataplane";
  // A polling worker (busy, adaptive) calls poll_once every turn. With DEFER_TASKRUN the
  // kernel runs completions only inside io_uring_enter, so each turn would cost a syscall
  // (18.8% of a worker's samples at 50,000 msg/s over memif); COOP_TASKRUN's SQ flag says
  // instead when entering is needed. Only a blocking worker, which enters to sleep on every
  // turn anyway, keeps DEFER_TASKRUN.
  loop_options.try_defer_taskrun = dp.poll_mode() == config::PollMode::blocking;
  auto loop = uring::EventLoop::create(loop_options);
  if (!loop.ok()) return loop.status();
  parts.loop = std::move(*loop);

  const uint32_t max_sessions =
      std::max<uint32_t>(16, config.limits().max_connections() / setup_.workers);
  KernelTransportOptions transport_options;
  transport_options.listen_address = dp.listen_address()->str();
  transport_options.port = dp.chat_port();
  transport_options.limits.max_connections = max_sessions;
  // The session cuts a slow consumer off at send_queue_bytes_per_session of plaintext, but
  // always takes one frame into an empty queue; the transport holds ciphertext. So the
  // transport's own limit (which fails a send outright) sits above the session's: one more
  // largest frame plus TLS record overhead (22 bytes per 16 KiB record; 1/512 is generous).
  const uint64_t plaintext_bytes = uint64_t{config.limits().send_queue_bytes_per_session()} +
                                   config.limits().max_frame_bytes() + 4;
  transport_options.limits.send_queue_bytes = static_cast<uint32_t>(
      std::min<uint64_t>(UINT32_MAX, plaintext_bytes + plaintext_bytes / 512 + 4096));
  transport_options.limits.send_low_water_bytes =
      config.limits().send_queue_bytes_per_session() / 4;
  // The TSC where it is invariant (else CLOCK_MONOTONIC): a loaded worker reads the time on
  // every turn and for every segment, and clock_gettime was 7% of one (docs/PERFORMANCE.md).
  // Every part of the worker takes its time from this one copy, so they share one time line.
  const clock::Clock clock = clock::Clock::process();
  const bool use_dpdk = setup_.dpdk != nullptr;
  // TCP (dpdk) keeps one wheel timer per block (its tcp.max_connections: sessions, SYN queue,
  // accept backlog, 16) and one for its TIME-WAIT table, which holds no block.
  parts.wheel = std::make_unique<timer::TimerWheel>(timer::TimerWheelConfig{
      .capacity =
          max_sessions + 1024 +
          (use_dpdk ? max_sessions + dp.dpdk()->syn_queue() + dp.dpdk()->accept_backlog() + 17 : 0),
      .tick_ns = 1'000'000,
      .start_ns = clock.now_ns()});
  if (use_dpdk) {
    auto options = dpdk_transport_options(config, *setup_.dpdk, setup_.index);
    if (!options.ok()) return options.status();
    options->limits = transport_options.limits;
    parts.dpdk_transport = std::make_unique<dpdk::DpdkTransport>(*options, clock, *parts.wheel);
    const dpdk::DpdkSettings& ds = setup_.dpdk->settings();
    dpdk::LoopConfig lc;
    lc.queue = setup_.index;
    lc.burst_size = ds.burst_size;
    lc.poll_mode = ds.poll_mode;
    lc.idle_polls = ds.idle_polls;
    lc.idle_sleep_us = ds.idle_sleep_us;
    parts.port_loop =
        std::make_unique<dpdk::PortLoop>(lc, setup_.dpdk->loop_ports(), setup_.dpdk->mempool(),
                                         *parts.dpdk_transport, setup_.dpdk->steering());
    parts.active = parts.dpdk_transport.get();
  } else {
    auto transport = KernelTransport::create(*parts.loop, transport_options);
    if (!transport.ok()) return transport.status();
    parts.transport = std::move(*transport);
    parts.active = parts.transport.get();
  }

  parts.tls = std::make_unique<TlsLayer>(*parts.active, setup_.tls_context,
                                         TlsLayerOptions{.max_connections = max_sessions});
  auth::TokenVerifierOptions verifier_options;
  verifier_options.max_token_ttl_ms = std::max<uint64_t>(
      verifier_options.max_token_ttl_ms, uint64_t{config.session_tokens().token_ttl_s()} * 1000);
  parts.verifier = std::make_unique<auth::TokenVerifier>(verifier_options);

  StoreClientOptions store_options;
  store_options.instance_id = setup_.instance_id;
  store_options.worker = setup_.index;
  store_options.workers = setup_.workers;
  store_options.node_id = config.node().id();
  MeshEndpoint& mesh = setup_.mesh->endpoint(setup_.index);

  // The router and its store client: the store's callbacks go to the router (made next).
  StoreClientCallbacks store_callbacks;
  store_callbacks.on_outcome = [&parts](const StoreOutcome& o) {
    parts.router->on_store_outcome(o);
  };
  store_callbacks.on_drain = [&parts](const DrainBatch& b) { parts.router->on_drain_batch(b); };
  // The directory is shared: worker 0 alone mirrors its counters.
  parts.mirror = std::make_unique<StatsMirror>(StatsMirrorOptions{
      .worker = setup_.index, .with_directory = setup_.index == 0, .with_dpdk = use_dpdk});
  store_callbacks.on_append_latency = [&parts](uint64_t ns) {
    parts.mirror->record_store_latency(ns);
  };
  parts.store = std::make_unique<StoreClient>(store_options, std::move(store_callbacks));
  const int64_t unix_offset_ms =
      static_cast<int64_t>(unix_now_ms()) - static_cast<int64_t>(clock.now_ns() / 1'000'000);
  parts.router = std::make_unique<routing::WorkerRouter>(
      router_options_from_config(config, setup_.index, setup_.workers, unix_offset_ms,
                                 setup_.instance_id),
      clock, *setup_.directory, *parts.store, mesh);
  SessionLayerOptions session_options = session_options_from_config(config);
  session_options.max_sessions = max_sessions;
  session_options.server_version = HERALD_VERSION;
  session_options.unix_offset_ms = unix_offset_ms;
  parts.sessions = std::make_unique<SessionLayer>(*parts.tls, *parts.router, *parts.verifier,
                                                  *parts.wheel, clock, session_options);
  parts.tls->set_upper(*parts.sessions);

  // Pushes from the control plane: auth state for the verifier and the sessions it vouches
  // for, groups and device lists for the router, config for the session limits.
  parts.store->set_push_handler(ipc::Record::SessionKeyPush, [&parts](const ipc::Envelope& e) {
    const auto* push = e.record_as_SessionKeyPush();
    if (push->key() == nullptr || push->key()->size() != auth::kSessionKeyBytes) return;
    auth::SessionKey key;
    key.key_id = push->key_id();
    std::memcpy(key.key.data(), push->key()->data(), key.key.size());
    key.not_before_ms = push->not_before_ms();
    key.not_after_ms = push->not_after_ms();
    if (!parts.verifier->install_key(key, unix_now_ms())) {
      HLOG_WARN("dataplane.session_key_refused").kv("key_id", uint64_t{key.key_id});
    }
  });
  parts.store->set_push_handler(ipc::Record::RevocationPush, [&parts](const ipc::Envelope& e) {
    const auto* push = e.record_as_RevocationPush();
    if (push->revocations() == nullptr) return;
    for (const ipc::Revocation* r : *push->revocations()) {
      if (r->account() == nullptr) continue;
      const auth::AccountId account{r->account()->hi(), r->account()->lo()};
      const uint32_t device =
          r->device().has_value() ? *r->device() : auth::RevocationSet::kAllDevices;
      (void)parts.verifier->revoke(account, device, r->issued_before_ms(), unix_now_ms());
      (void)parts.router->close_device_sessions(*r->account(), device,
                                                wire::ErrorCode::SessionRevoked);
    }
  });
  parts.store->set_push_handler(ipc::Record::GroupMembershipPush, [&parts](const ipc::Envelope& e) {
    parts.router->on_group_push(*e.record_as_GroupMembershipPush());
  });
  parts.store->set_push_handler(ipc::Record::DeviceListResponse, [&parts](const ipc::Envelope& e) {
    parts.router->on_device_list_response(*e.record_as_DeviceListResponse());
  });
  parts.store->set_push_handler(ipc::Record::DeviceListPush, [&parts](const ipc::Envelope& e) {
    parts.router->on_device_list_push(*e.record_as_DeviceListPush());
  });
  parts.store->set_push_handler(ipc::Record::DrainKick, [&parts](const ipc::Envelope& e) {
    parts.router->on_drain_kick(*e.record_as_DrainKick());
  });
  parts.store->set_push_handler(ipc::Record::ConfigPush, [&parts](const ipc::Envelope& e) {
    const auto* push = e.record_as_ConfigPush();
    if (push->config() == nullptr) return;
    auto pushed = config::config_from_buffer({push->config()->data(), push->config()->size()});
    if (!pushed.ok()) {
      HLOG_WARN("dataplane.config_push_refused").kv("error", pushed.status().ToString());
      return;
    }
    parts.sessions->set_limits(session_limits_from_config(*pushed));
  });

  // Wake-ups: stop()/set_link(), the mesh doorbell, and (when attached) the store doorbell.
  parts.wake.arm(*parts.loop, wake_fd_);
  parts.mesh_doorbell.arm(*parts.loop, mesh.doorbell_fd());
  parts.active->start(*parts.tls);
  const uint16_t port = use_dpdk ? dp.chat_port() : parts.transport->port();
  status_.port.store(port);
  status_.listening.store(true);
  HLOG_INFO("dataplane.worker.started")
      .kv("worker", uint64_t{setup_.index})
      .kv("backend", std::string(use_dpdk ? "dpdk" : "kernel"))
      .kv("port", uint64_t{port})
      .kv("max_sessions", uint64_t{max_sessions});

  // Every ~100 ms and at stop: the parts' stats into the counters segment (stats_mirror.h).
  auto publish_stats = [&](uint64_t now_ns) {
    const WorkerLoopStats loop_stats{status_.loop_turns.load(std::memory_order_relaxed),
                                     status_.sleeps.load(std::memory_order_relaxed),
                                     status_.empty_turns.load(std::memory_order_relaxed)};
    WorkerStatsView view = collect_worker_stats(
        *parts.active, *parts.tls, *parts.sessions, *parts.router, *parts.store, mesh, loop_stats,
        setup_.index == 0 ? setup_.directory : nullptr, parts.mirror_scratch);
    if (setup_.index == 0 && setup_.memory != nullptr) {
      parts.mirror_scratch.process = setup_.memory->read();
      view.process = &parts.mirror_scratch.process;
    }
    if (use_dpdk) {
      view.net = &parts.dpdk_transport->net_stats();
      view.tcp = &parts.dpdk_transport->tcp_stats();
      view.dpdk_transport = &parts.dpdk_transport->stats();
      parts.mirror_scratch.dpdk_loop = dpdk::snapshot(parts.port_loop->stats());
      view.dpdk_loop = &parts.mirror_scratch.dpdk_loop;
      if (setup_.index == 0) {  // one pool per process: worker 0 publishes it
        parts.mirror_scratch.dpdk_pool = {setup_.dpdk->mempool_available(),
                                          setup_.dpdk->mempool_in_use()};
        view.dpdk_pool = &parts.mirror_scratch.dpdk_pool;
      }
    }
    parts.mirror->publish(now_ns, view);
  };
  const config::PollMode mode = dp.poll_mode();
  const uint32_t idle_polls_before_sleep =
      mode == config::PollMode::blocking ? 1 : std::max<uint32_t>(1, dp.adaptive_idle_polls());
  // backend dpdk: a port has no completion to wake a sleeping worker, so a sleep is bounded by
  // dataplane.dpdk.idle_sleep_us (the latency an idle worker adds to a first packet).
  const uint64_t dpdk_sleep_ns =
      use_dpdk ? uint64_t{setup_.dpdk->settings().idle_sleep_us} * 1000 : kMaxSleepNs;
  // A DPDK worker calls into the port's PMD all through its turn (rx bursts, and tx bursts
  // whenever a burst of frames fills): it reports a quiescent state at the top of each turn and
  // is offline while asleep, so a departing memif peer's memory is not unmapped under a burst
  // (unmap_guard.h).
  std::optional<dpdk::PmdPoller> pmd_poller;
  if (use_dpdk) pmd_poller.emplace();
  uint32_t idle_polls = 0;
  while (!stop_.load(std::memory_order_acquire)) {
    if (pmd_poller) pmd_poller->quiescent();
    // The control plane came or went.
    if (const uint64_t g = link_generation_.load(std::memory_order_acquire);
        g != parts.link_generation) {
      parts.link_generation = g;
      std::shared_ptr<const ipc::ControlPlaneLink> link;
      {
        std::lock_guard<std::mutex> lock(link_mu_);
        link = pending_link_;
      }
      parts.store_doorbell.disarm(*parts.loop);
      if (parts.store->attached()) parts.store->detach();
      parts.mirror->detach();
      parts.link = std::move(link);
      if (parts.link != nullptr) {
        auto store_link = make_store_link(*parts.link, setup_.index);
        if (store_link.ok()) {
          parts.router->on_controlplane_hello(parts.link->controlplane.server_msg_time_floor_ms);
          parts.store->attach(std::move(*store_link));
          parts.store_doorbell.arm(*parts.loop, parts.link->dp_doorbells[setup_.index].fd());
          // A new segment when the control plane restarted: register again, deltas continue.
          if (absl::Status st = parts.mirror->attach(parts.link->counters_fd.get()); !st.ok()) {
            HLOG_WARN("dataplane.worker.counters_unavailable").kv("error", st.ToString());
          }
        } else {
          HLOG_ERROR("dataplane.worker.link_failed").kv("error", store_link.status().ToString());
          parts.link.reset();
        }
      }
    }
    // One turn: socket completions (transport, TLS, sessions, router), timers, the router's own
    // work (mesh hand-offs in, drains, device-list timeouts), then the store's ring both ways
    // and this turn's hand-offs out: one commit per ring.
    size_t work = parts.loop->poll_once();
    if (use_dpdk) {
      // rx burst → stack → TCP → TLS → sessions, the stack's turn, tx burst.
      work += parts.port_loop->poll_once() ? 1 : 0;
    } else {
      work += parts.transport->poll();  // the socket shards' rings (the transport's own)
    }
    uint64_t now = clock.now_ns();
    work += parts.wheel->advance(now);
    work += parts.router->poll(now);
    work += parts.store->poll(now);
    work += mesh.flush();
    // Frames built after the port's turn (timers, hand-offs) go out on the next turn at once.
    if (use_dpdk) work += parts.dpdk_transport->pending_tx_frames();
    status_.loop_turns.fetch_add(1, std::memory_order_relaxed);
    status_.sessions.store(parts.sessions->sessions(), std::memory_order_relaxed);
    if (parts.mirror->due(now)) publish_stats(now);
    if (work == 0) status_.empty_turns.fetch_add(1, std::memory_order_relaxed);
    if (work > 0 || mode == config::PollMode::busy) {
      idle_polls = 0;
      continue;
    }
    if (++idle_polls < idle_polls_before_sleep) continue;
    idle_polls = 0;
    // Sleep until a completion, a doorbell (the control plane's ring, another worker's
    // hand-off), stop()/set_link(), or the next timer. Announcing the sleep on the rings first
    // means their producers ring the doorbells.
    if (!use_dpdk && !parts.transport->prepare_to_sleep()) continue;  // no woke() to undo
    if (parts.store->attached() && !parts.store->prepare_to_sleep()) continue;
    if (!mesh.prepare_to_sleep()) {
      if (parts.store->attached()) parts.store->woke();
      continue;
    }
    now = clock.now_ns();
    const uint64_t next = parts.wheel->next_wakeup_ns();
    const uint64_t sleep_ns = next <= now ? 0 : std::min<uint64_t>(next - now, dpdk_sleep_ns);
    status_.sleeps.fetch_add(1, std::memory_order_relaxed);
    if (pmd_poller) pmd_poller->offline();
    (void)parts.loop->run_once(static_cast<int64_t>(sleep_ns));
    if (pmd_poller) pmd_poller->online();
    if (parts.store->attached()) parts.store->woke();
    mesh.woke();
  }

  // Stop: close every connection, let the loop finish what is in flight.
  parts.active->stop();
  if (use_dpdk) {
    // The resets go out on the port; then the stack is gone before the runtime stops the port.
    for (int i = 0; i < 10 && parts.port_loop->poll_once(); ++i) {
    }
    // What this worker's loop and stack carried: with several workers on a port, how the flows
    // spread and how many frames went through the hand-off rings (the counters segment sums
    // the workers).
    const dpdk::LoopStatsSnapshot port_loop = dpdk::snapshot(parts.port_loop->stats());
    HLOG_INFO("dataplane.worker.dpdk_stopped")
        .kv("worker", uint64_t{setup_.index})
        .kv("accepted", parts.dpdk_transport->stats().accepted)
        .kv("rx_packets", port_loop.rx_packets)
        .kv("tx_packets", port_loop.tx_packets)
        .kv("steered_out", port_loop.steered_out)
        .kv("steered_in", port_loop.steered_in)
        .kv("steered_copies", port_loop.steered_copies)
        .kv("steer_ring_full_drops", port_loop.steer_ring_full_drops);
  } else {
    for (int i = 0; i < 10'000 && !parts.transport->idle(); ++i)
      (void)parts.loop->run_once(1'000'000);
  }
  pmd_poller.reset();  // no PMD call from here on
  parts.store_doorbell.disarm(*parts.loop);
  parts.mesh_doorbell.disarm(*parts.loop);
  parts.wake.disarm(*parts.loop);
  // A cancelled poll is still the kernel's until its completion is reaped: destroying the
  // watch before that aborts (uring::Operation's destructor guards the memory).
  for (int i = 0; i < 1000 && (parts.store_doorbell.op.in_flight() ||
                               parts.mesh_doorbell.op.in_flight() || parts.wake.op.in_flight());
       ++i) {
    (void)parts.loop->run_once(1'000'000);
  }
  publish_stats(clock.now_ns());  // the last counts, while the segment is mapped
  if (parts.store->attached()) parts.store->detach();
  status_.listening.store(false);
  return absl::OkStatus();
}

}  // namespace herald::dataplane
