// herald-controlplane's process skeleton: data-dir ownership, counters segment, event loop,
// signals. Every control-plane service runs on the loop started here.
#include "controlplane/controlplane.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "controlplane/api/registration_api.h"
#include "platform/clock/clock.h"
#include "platform/log/log.h"

namespace herald::controlplane {

namespace {

constexpr uint64_t kTickPeriodNs = 1'000'000'000;  // gauges refresh once a second
constexpr char kLockFileName[] = "controlplane.lock";

absl::Status errno_status(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

// The data directory is the control plane's alone: a second instance on the same directory
// would interleave writes to the same log segments. flock() is released by the kernel when
// the process dies, so a crash never leaves a stale lock behind.
absl::StatusOr<shm::UniqueFd> lock_data_dir(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create data dir ", data_dir, ": ", ec.message()));
  ::chmod(data_dir.c_str(), 0700);
  const std::string path = absl::StrCat(data_dir, "/", kLockFileName);
  shm::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return errno_status(absl::StrCat("cannot open ", path), errno);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data dir ", data_dir, " is in use by another herald-controlplane (", path, ")"));
    }
    return errno_status(absl::StrCat("cannot lock ", path), errno);
  }
  // The lock file names its holder, for an operator wondering who has it.
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return errno_status(absl::StrCat("cannot write ", path), errno);
  }
  return fd;
}

// SIGINT and SIGTERM stop the node and SIGHUP reloads the public certificate; they are blocked
// and read from a signalfd on the loop, so they run as ordinary completions rather than inside
// a signal handler.
absl::StatusOr<shm::UniqueFd> make_signal_fd() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return absl::InternalError("cannot block SIGINT/SIGTERM/SIGHUP");
  }
  shm::UniqueFd fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return errno_status("signalfd", errno);
  return fd;
}

counters::Capacity counters_capacity(const config::Config& config) {
  counters::Capacity capacity;
  capacity.max_entries = config.shm().counters_capacity();
  // One block per dataplane worker plus the control plane's own threads.
  capacity.max_threads = static_cast<uint32_t>(config.dataplane().workers()) + 4;
  return capacity;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::start(config::Config config,
                                                                  const StartOptions& options) {
  std::string data_dir = options.data_dir.empty()
                             ? std::string(config.node().data_dir()->string_view())
                             : options.data_dir;
  auto lock_fd = lock_data_dir(data_dir);
  if (!lock_fd.ok()) return lock_fd.status();

  auto counters = counters::CountersSegment::create("herald-counters", counters_capacity(config));
  if (!counters.ok()) return counters.status();

  uring::Options loop_options;
  loop_options.mode = uring::RunMode::kBlocking;
  loop_options.name = "controlplane";
  auto loop = uring::EventLoop::create(loop_options);
  if (!loop.ok()) return loop.status();

  auto signal_fd = make_signal_fd();
  if (!signal_fd.ok()) return signal_fd.status();

  std::unique_ptr<ControlPlane> cp(new ControlPlane(std::move(config), std::move(data_dir),
                                                    std::move(*lock_fd), std::move(*counters),
                                                    std::move(*loop), std::move(*signal_fd)));
  if (absl::Status status = cp->register_counters(); !status.ok()) return status;

  NodeServicesOptions service_options;
  service_options.data_dir = cp->data_dir_;
  service_options.config_from_file = options.config_from_file;
  service_options.version = HERALD_VERSION;
  service_options.started_unix_ms = api::system_unix_ms();
  ControlPlane* self = cp.get();
  service_options.uptime_ms = [self] { return self->uptime_ms(); };
  service_options.dataplane_connected = [self] {
    return self->ipc_ != nullptr && self->ipc_->dataplane_connected();
  };
  service_options.dataplane_pid = [self] {
    return self->ipc_ != nullptr ? self->ipc_->dataplane_pid() : 0;
  };
  service_options.publish_own_counters = [self] {
    if (self->services_ != nullptr && self->ipc_ != nullptr) self->publish_stats();
  };
  auto services = NodeServices::create(*cp->loop_, cp->config_, cp->counters_, service_options);
  if (!services.ok()) return services.status();
  cp->services_ = std::move(*services);
  for (const NodeServices::Counter& counter : cp->services_->counters()) {
    auto handle = cp->counters_.registry().counter(counter.name);
    if (!handle.ok()) return handle.status();
    cp->service_counters_.emplace_back(*handle, 0);
  }
  for (const NodeServices::Counter& gauge : cp->services_->gauges()) {
    auto handle = cp->counters_.registry().gauge(gauge.name);
    if (!handle.ok()) return handle.status();
    cp->service_gauges_.push_back(*handle);
  }

  IpcServerOptions ipc_options = IpcServerOptions::from_config(cp->config_);
  ipc_options.counters_fd = cp->counters_.fd();
  ipc_options.build = HERALD_VERSION;
  auto ipc = IpcServer::start(*cp->loop_, std::move(ipc_options), &cp->services_->store_service());
  if (!ipc.ok()) return ipc.status();
  cp->ipc_ = std::move(*ipc);
  cp->services_->attach_ipc(*cp->ipc_);

  cp->loop_->poll(cp->signal_op_, cp->signal_fd_.get(), POLLIN, /*persistent=*/true);
  cp->loop_->tick(cp->tick_op_, kTickPeriodNs);
  HLOG_INFO("controlplane.started")
      .kv("version", HERALD_VERSION)
      .kv("node_id", cp->config_.node().id())
      .kv("data_dir", cp->data_dir_)
      .kv("ipc_socket", cp->config_.controlplane().ipc_socket_path()->str())
      .kv("admin_port", cp->services_->admin_port())
      .kv("public_port", cp->services_->public_port())
      .kv("counters_bytes", cp->counters_.segment().size());
  return cp;
}

ControlPlane::ControlPlane(config::Config config, std::string data_dir, shm::UniqueFd lock_fd,
                           counters::CountersSegment counters,
                           std::unique_ptr<uring::EventLoop> loop, shm::UniqueFd signal_fd)
    : config_(std::move(config)),
      data_dir_(std::move(data_dir)),
      lock_fd_(std::move(lock_fd)),
      counters_(std::move(counters)),
      loop_(std::move(loop)),
      signal_fd_(std::move(signal_fd)),
      signal_op_(&ControlPlane::on_signal, this),
      tick_op_(&ControlPlane::on_tick, this),
      started_ns_(clock::monotonic_ns()) {}

ControlPlane::~ControlPlane() {
  loop_->cancel(signal_op_);
  loop_->cancel(tick_op_);
  // Let the cancellations complete so no operation outlives its owner.
  while (signal_op_.in_flight() || tick_op_.in_flight()) loop_->run_once(10'000'000);
}

absl::Status ControlPlane::register_counters() {
  auto& registry = counters_.registry();
  auto thread = registry.thread(0);
  if (!thread.ok()) return thread.status();
  thread_counters_.emplace(*thread);
  auto uptime = registry.gauge("controlplane.uptime_seconds");
  auto node_id = registry.gauge("controlplane.node_id");
  auto connected = registry.gauge("ipc.dataplane_connected");
  if (!uptime.ok()) return uptime.status();
  if (!node_id.ok()) return node_id.status();
  if (!connected.ok()) return connected.status();
  uptime_seconds_ = *uptime;
  config_node_id_ = *node_id;
  ipc_dataplane_connected_ = *connected;
  const std::pair<MirroredCounter*, const char*> mirrored[] = {
      {&loop_iterations_, "controlplane.loop.iterations"},
      {&loop_completions_, "controlplane.loop.completions"},
      {&ipc_connects_, "ipc.connects"},
      {&ipc_disconnects_, "ipc.disconnects"},
      {&ipc_rejections_, "ipc.rejections"},
      {&ipc_records_in_, "ipc.records_in"},
      {&ipc_records_out_, "ipc.records_out"},
      {&ipc_bad_records_, "ipc.bad_records"},
      {&ipc_ring_full_, "ipc.ring_full"},
      {&ipc_backlogged_, "ipc.backlogged"},
      {&ipc_backlog_full_, "ipc.backlog_full"},
      {&ipc_send_failures_, "ipc.send_failures"},
  };
  for (auto [counter, name] : mirrored) {
    auto handle = registry.counter(name);
    if (!handle.ok()) return handle.status();
    counter->handle = *handle;
  }
  auto backlog_records = registry.gauge("ipc.backlog_records");
  auto backlog_bytes = registry.gauge("ipc.backlog_bytes");
  if (!backlog_records.ok()) return backlog_records.status();
  if (!backlog_bytes.ok()) return backlog_bytes.status();
  ipc_backlog_records_ = *backlog_records;
  ipc_backlog_bytes_ = *backlog_bytes;
  thread_counters_->set(config_node_id_, config_.node().id());
  return absl::OkStatus();
}

uint64_t ControlPlane::uptime_ms() const {
  return (clock::monotonic_ns() - started_ns_) / 1'000'000;
}

void ControlPlane::run() {
  loop_->run();
  // Listeners drain and the logs go idle before the process lets go of anything.
  services_->shutdown();
  publish_stats();
  HLOG_INFO("controlplane.stopped").kv("uptime_ms", uptime_ms());
}

void ControlPlane::mirror(MirroredCounter& counter, uint64_t now_value) {
  thread_counters_->add(counter.handle, now_value - counter.published);
  counter.published = now_value;
}

void ControlPlane::publish_stats() {
  const uring::LoopStats& loop = loop_->stats();
  mirror(loop_iterations_, loop.iterations);
  mirror(loop_completions_, loop.completions);
  thread_counters_->set(uptime_seconds_, static_cast<int64_t>(uptime_ms() / 1000));

  const IpcServerStats& ipc = ipc_->stats();
  uint64_t records_in = 0, records_out = 0, bad = 0;
  for (uint64_t n : ipc.records_in) records_in += n;
  for (uint64_t n : ipc.records_out) records_out += n;
  for (uint64_t n : ipc.bad_records) bad += n;
  mirror(ipc_connects_, ipc.connects);
  mirror(ipc_disconnects_, ipc.disconnects);
  mirror(ipc_rejections_, ipc.rejected_bad_hello + ipc.rejected_version + ipc.rejected_workers +
                              ipc.rejected_busy + ipc.rejected_internal + ipc.handshake_timeouts);
  mirror(ipc_records_in_, records_in);
  mirror(ipc_records_out_, records_out);
  mirror(ipc_bad_records_, bad);
  thread_counters_->set(ipc_dataplane_connected_, ipc_->dataplane_connected() ? 1 : 0);
  mirror(ipc_ring_full_, ipc.ring_full);
  mirror(ipc_backlogged_, ipc.backlogged);
  mirror(ipc_backlog_full_, ipc.backlog_full);
  mirror(ipc_send_failures_, ipc.too_large + ipc.broken_sends);
  thread_counters_->set(ipc_backlog_records_, static_cast<int64_t>(ipc_->backlog_records_total()));
  thread_counters_->set(ipc_backlog_bytes_, static_cast<int64_t>(ipc_->backlog_bytes_total()));
  const auto& service_counters = services_->counters();
  for (size_t i = 0; i < service_counters.size(); ++i) {
    auto& [handle, published] = service_counters_[i];
    const uint64_t now_value = service_counters[i].value();
    thread_counters_->add(handle, now_value - published);
    published = now_value;
  }
  const auto& service_gauges = services_->gauges();
  for (size_t i = 0; i < service_gauges.size(); ++i) {
    thread_counters_->set(service_gauges_[i], static_cast<int64_t>(service_gauges[i].value()));
  }
}

void ControlPlane::on_signal(uring::Operation& op, const uring::Completion& completion) {
  auto* self = op.context_as<ControlPlane>();
  if (completion.result == -ECANCELED) return;  // shutting down
  if (completion.result < 0) {
    HLOG_ERROR("controlplane.signalfd_failed").kv("error", std::strerror(-completion.result));
    self->loop_->stop();
    return;
  }
  signalfd_siginfo info{};
  while (::read(self->signal_fd_.get(), &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGHUP) {
      self->services_->reload_certificate();
      continue;
    }
    HLOG_INFO("controlplane.stopping").kv("signal", ::strsignal(static_cast<int>(info.ssi_signo)));
    self->loop_->stop();
  }
}

void ControlPlane::on_tick(uring::Operation& op, const uring::Completion& completion) {
  auto* self = op.context_as<ControlPlane>();
  if (completion.result < 0 && completion.result != -ETIME) return;
  self->services_->tick();
  self->publish_stats();
}

}  // namespace herald::controlplane
