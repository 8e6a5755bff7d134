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

// SIGINT and SIGTERM stop the node; they are blocked and read from a signalfd on the loop,
// so shutdown runs as an ordinary completion rather than inside a signal handler.
absl::StatusOr<shm::UniqueFd> make_signal_fd() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return absl::InternalError("cannot block SIGINT/SIGTERM");
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

  cp->loop_->poll(cp->signal_op_, cp->signal_fd_.get(), POLLIN, /*persistent=*/true);
  cp->loop_->tick(cp->tick_op_, kTickPeriodNs);
  HLOG_INFO("controlplane.started")
      .kv("version", HERALD_VERSION)
      .kv("node_id", cp->config_.node().id())
      .kv("data_dir", cp->data_dir_)
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
  auto iterations = registry.counter("controlplane.loop.iterations");
  auto completions = registry.counter("controlplane.loop.completions");
  for (const absl::Status& s :
       {uptime.status(), node_id.status(), iterations.status(), completions.status()}) {
    if (!s.ok()) return s;
  }
  uptime_seconds_ = *uptime;
  config_node_id_ = *node_id;
  loop_iterations_ = *iterations;
  loop_completions_ = *completions;
  thread_counters_->set(config_node_id_, config_.node().id());
  return absl::OkStatus();
}

uint64_t ControlPlane::uptime_ms() const {
  return (clock::monotonic_ns() - started_ns_) / 1'000'000;
}

void ControlPlane::run() {
  loop_->run();
  publish_loop_stats();
  HLOG_INFO("controlplane.stopped").kv("uptime_ms", uptime_ms());
}

void ControlPlane::publish_loop_stats() {
  const uring::LoopStats& now = loop_->stats();
  thread_counters_->add(loop_iterations_, now.iterations - published_stats_.iterations);
  thread_counters_->add(loop_completions_, now.completions - published_stats_.completions);
  published_stats_ = now;
  thread_counters_->set(uptime_seconds_, static_cast<int64_t>(uptime_ms() / 1000));
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
    HLOG_INFO("controlplane.stopping").kv("signal", ::strsignal(static_cast<int>(info.ssi_signo)));
    self->loop_->stop();
  }
}

void ControlPlane::on_tick(uring::Operation& op, const uring::Completion& completion) {
  auto* self = op.context_as<ControlPlane>();
  if (completion.result < 0 && completion.result != -ETIME) return;
  self->publish_loop_stats();
}

}  // namespace herald::controlplane
