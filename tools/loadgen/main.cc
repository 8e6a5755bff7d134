// herald-loadgen: provisions accounts, forks worker processes that hold one TLS connection per
// account (engine.h), drives the scenario's phases through shared memory, then merges what the
// workers saw into one verdict (results.h). Exit: 0 clean, 1 an acked message was lost,
// 2 duplicates only, 3 a setup error, 64 bad flags.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tools/client/tls_stream.h"
#include "tools/loadgen/control.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/herald_protocol.h"
#include "tools/loadgen/mqtt_protocol.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/provision.h"
#include "tools/loadgen/results.h"

namespace herald::tools::loadgen {
namespace {

constexpr int kExitSetup = 3;
constexpr uint16_t kMqttKeepaliveS = 60;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double seconds_since(int64_t start_ns) {
  return static_cast<double>(mono_ns() - start_ns) / 1e9;
}

class Coordinator {
 public:
  explicit Coordinator(const Options& options) : o_(options) {}

  int run() {
    if (int code = setup(); code != 0) return code;
    if (int code = start_workers(); code != 0) return code;
    const int code = drive();
    return finish(code);
  }

 private:
  void note(const std::string& line) const {
    if (!o_.quiet) std::fprintf(stderr, "herald-loadgen: %s\n", line.c_str());
  }
  int setup_error(const std::string& what) {
    std::fprintf(stderr, "herald-loadgen: %s\n", what.c_str());
    return kExitSetup;
  }

  int setup() {
    std::random_device random;
    run_id_ = static_cast<uint32_t>(random()) | 1u;
    if (inet_pton(AF_INET, o_.target.host.c_str(), &target_.sin_addr) != 1) {
      return setup_error("--target: an IPv4 address is needed (got '" + o_.target.host + "')");
    }
    target_.sin_family = AF_INET;
    target_.sin_port = htons(o_.target.port);

    tls_options_.max_version = tls::TlsVersion::kTls13;
    // Each session drops its SSL after the handshake and protects records with our own record
    // layer: BoringSSL's full record path (SSL_read/SSL_write, the BIO, the error queue) was
    // the loadgen's largest cost per message, and its SSL most of its memory per session. The
    // loadgen never resumes, so passing over the server's tickets costs nothing.
    tls_options_.compact_after_handshake = true;
    if (!o_.dpdk_port.empty()) {
      // The target sits behind the DPDK port, out of the kernel's reach: no probe. The pin is
      // the certificate file's own leaf, so a wrong --chat-cert still fails every handshake
      // (counted), just not up front.
      if (!o_.ca_file.empty()) {
        tls_options_.ca_file = o_.ca_file;
      } else {
        auto pem = read_pem_file(o_.chat_cert);
        if (!pem.ok()) return setup_error("--chat-cert: " + std::string(pem.status().message()));
        auto digest = leaf_sha256_of_pem(*pem);
        if (!digest.ok()) {
          return setup_error("--chat-cert: " + std::string(digest.status().message()));
        }
        tls_options_.pin = true;
        tls_options_.pinned_sha256 = *digest;
      }
      return after_trust();
    }

    // One blocking handshake first: the target is up, and its certificate passes the trust
    // check, before thousands of connections find out one by one. A pinned certificate is
    // pinned by the SHA-256 of the leaf the target presents (and the stream checked).
    TlsStreamOptions probe{
        .host = o_.target.host, .port = o_.target.port, .server_name = o_.server_name};
    if (!o_.ca_file.empty()) {
      probe.trust = Trust::ca(o_.ca_file);
    } else {
      auto pem = read_pem_file(o_.chat_cert);
      if (!pem.ok()) return setup_error("--chat-cert: " + std::string(pem.status().message()));
      probe.trust = Trust::pinned(*pem);
    }
    auto stream = TlsStream::connect(probe);
    if (!stream.ok()) {
      return setup_error("cannot reach the target " + o_.target.host + ":" +
                         std::to_string(o_.target.port) + ": " +
                         std::string(stream.status().message()));
    }
    if (!o_.ca_file.empty()) {
      tls_options_.ca_file = o_.ca_file;
    } else {
      tls_options_.pin = true;
      tls_options_.pinned_sha256 = (*stream)->tls().peer_certificate().sha256;
    }
    (*stream)->close();
    return after_trust();
  }

  // The accounts, once the target's trust is settled.
  int after_trust() {
    topology_.accounts = o_.connections;
    topology_.groups = o_.scenario == Scenario::kGroup;
    topology_.group_size = topology_.groups ? o_.group_size : 0;
    if (o_.protocol == Protocol::kMqtt) return 0;  // MQTT clients are only ids and topics
    return provision();
  }

  int provision() {
    std::vector<std::string> phones;
    phones.reserve(o_.connections);
    for (uint32_t i = 0; i < o_.connections; ++i) phones.push_back(phone_of(o_, i));
    const int64_t start_ns = mono_ns();
    std::vector<ProvisionedAccount> accounts;
    if (o_.provisioning == Provisioning::kAdmin) {
      std::ifstream key_file(o_.admin_key_file);
      std::string key;
      if (!key_file || !std::getline(key_file, key)) {
        return setup_error("cannot read the admin API key in " + o_.admin_key_file);
      }
      while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
      admin_ = AdminEndpoint{.host = o_.admin.host, .port = o_.admin.port, .api_key = key};
      auto r = provision_admin(admin_, phones, o_.device_name, [&](size_t done) {
        if (done % 10'000 == 0 || done == phones.size()) {
          note("provisioned " + std::to_string(done) + "/" + std::to_string(phones.size()));
        }
      });
      if (!r.ok()) return setup_error("provisioning: " + std::string(r.status().message()));
      accounts = std::move(*r);
    } else {
      auto pem = read_pem_file(o_.public_cert);
      if (!pem.ok()) return setup_error("--public-cert: " + std::string(pem.status().message()));
      const TlsStreamOptions api{
          .host = o_.public_api.host, .port = o_.public_api.port, .trust = Trust::pinned(*pem)};
      for (const std::string& phone : phones) {
        auto a = provision_public(api, o_.data_dir + "/sms.log", phone, o_.device_name);
        if (!a.ok()) {
          return setup_error("registering " + phone + ": " + std::string(a.status().message()));
        }
        accounts.push_back(std::move(*a));
      }
    }
    note("provisioned " + std::to_string(accounts.size()) + " accounts in " +
         std::to_string(seconds_since(start_ns)) + " s");
    directory_.devices.reserve(accounts.size());
    tokens_.reserve(accounts.size());
    for (ProvisionedAccount& a : accounts) {
      directory_.devices.emplace_back(wire::AccountId(a.account.hi, a.account.lo), a.device_id);
      tokens_.push_back(std::move(a.token));
    }
    if (topology_.groups) {
      if (o_.provisioning != Provisioning::kAdmin) {
        return setup_error("--scenario group needs --provision admin (groups are made there)");
      }
      for (uint32_t g = 0; g < topology_.group_count(); ++g) {
        std::vector<auth::AccountId> members;
        for (uint32_t a = topology_.group_begin(g); a < topology_.group_end(g); ++a) {
          members.push_back(accounts[a].account);
        }
        auto id = create_group(
            admin_, "loadgen-" + std::to_string(run_id_) + "-" + std::to_string(g), members);
        if (!id.ok()) return setup_error("groups: " + std::string(id.status().message()));
        // The admin API's 64-bit group id is the low half of the wire's GroupId.
        directory_.groups.emplace_back(0, *id);
      }
      note("created " + std::to_string(directory_.groups.size()) + " groups");
    }
    return 0;
  }

  int start_workers() {
    void* shared = mmap(nullptr, sizeof(ControlBlock), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return setup_error("mmap of the control block failed");
    control_ = new (shared) ControlBlock();
    std::fflush(nullptr);  // nothing buffered is written twice by the children
    const pid_t parent = getpid();
    for (uint32_t w = 0; w < o_.processes; ++w) {
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) != 0) return setup_error("pipe failed");
      const pid_t pid = fork();
      if (pid < 0) return setup_error("fork failed");
      if (pid == 0) {
        // A coordinator that dies takes its workers with it.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(kExitSetup);
        close(fds[0]);
        for (int fd : pipes_) close(fd);
        _exit(worker_main(w, fds[1]));
      }
      close(fds[1]);
      pipes_.push_back(fds[0]);
      pids_.push_back(pid);
    }
    return 0;
  }

  int worker_main(uint32_t w, int out_fd) {
    WorkerPlan plan;
    plan.options = &o_;
    plan.run_id = run_id_;
    plan.topology = topology_;
    plan.worker = w;
    plan.begin = static_cast<uint32_t>(uint64_t{o_.connections} * w / o_.processes);
    plan.end = static_cast<uint32_t>(uint64_t{o_.connections} * (w + 1) / o_.processes);
    plan.target = target_;
    plan.server_name = o_.server_name.empty() ? o_.target.host : o_.server_name;
    auto context = tls::ClientContext::create(tls_options_);
    if (!context.ok()) return kExitSetup;
    plan.tls = *context;
    HeraldCodec codec(directory_, o_.max_frame_bytes);
    if (o_.protocol == Protocol::kMqtt) {
      // Client ids carry the run: a broker hands a session over to a newer client with the
      // same id, and two runs must not fight over one.
      plan.make_protocol = [&](uint32_t index) -> std::unique_ptr<ClientProtocol> {
        return std::make_unique<MqttProtocol>(
            "hl-" + std::to_string(run_id_) + "-" + std::to_string(index), index, kMqttKeepaliveS,
            o_.max_frame_bytes);
      };
    } else {
      plan.make_protocol = [&](uint32_t index) -> std::unique_ptr<ClientProtocol> {
        return std::make_unique<HeraldProtocol>(codec, tokens_[index]);
      };
    }
    const std::string bytes = serialize(run_worker(plan, *control_));
    size_t at = 0;
    while (at < bytes.size()) {
      const ssize_t n = write(out_fd, bytes.data() + at, bytes.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return kExitSetup;
      at += static_cast<size_t>(n);
    }
    close(out_fd);
    return 0;
  }

  template <typename F>
  uint64_t sum(F field) const {
    uint64_t total = 0;
    for (uint32_t w = 0; w < o_.processes; ++w) {
      total += (control_->workers[w].*field).load(std::memory_order_acquire);
    }
    return total;
  }

  bool all(std::atomic<uint32_t> WorkerProgress::*field, uint32_t value) const {
    for (uint32_t w = 0; w < o_.processes; ++w) {
      if ((control_->workers[w].*field).load(std::memory_order_acquire) != value) return false;
    }
    return true;
  }

  // A worker that exited before kStop.
  bool worker_died() {
    for (size_t i = 0; i < pids_.size(); ++i) {
      int status = 0;
      if (pids_[i] > 0 && waitpid(pids_[i], &status, WNOHANG) == pids_[i]) {
        pids_[i] = -1;
        std::fprintf(stderr, "herald-loadgen: worker %zu exited early (status %d)\n", i, status);
        died_ = true;
      }
    }
    return died_;
  }

  void progress_line() {
    if (o_.quiet) return;
    const int64_t now = mono_ns();
    if (now < next_progress_ns_) return;
    next_progress_ns_ = now + 1'000'000'000;
    std::fprintf(stderr,
                 "herald-loadgen: %.1fs logged_in %lu sent %lu acked %lu delivered %lu/%lu "
                 "in_flight %lu\n",
                 seconds_since(start_ns_), sum(&WorkerProgress::logged_in),
                 sum(&WorkerProgress::sent), sum(&WorkerProgress::acked),
                 sum(&WorkerProgress::delivered), sum(&WorkerProgress::expected),
                 sum(&WorkerProgress::in_flight));
  }

  // Waits (polling every 5 ms) until done() or the timeout; false on the timeout or a death.
  template <typename F>
  bool wait_until(double timeout_s, F done) {
    const int64_t deadline = mono_ns() + static_cast<int64_t>(timeout_s * 1e9);
    for (;;) {
      if (done()) return true;
      if (worker_died()) return false;
      if (mono_ns() >= deadline) return false;
      progress_line();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void set_phase(Phase phase) { control_->phase.store(uint32_t(phase), std::memory_order_release); }

  // Also: no worker still reconnecting after a link loss (its clients' messages wait for it).
  bool settled() {
    return sum(&WorkerProgress::link_pending) == 0 && sum(&WorkerProgress::in_flight) == 0 &&
           sum(&WorkerProgress::delivered) >= sum(&WorkerProgress::expected);
  }

  int drive() {
    start_ns_ = mono_ns();
    const uint64_t first =
        o_.scenario == Scenario::kOfflineDrain ? o_.connections / 2 : o_.connections;
    const bool connected = wait_until(o_.connect_timeout_s, [&] {
      return sum(&WorkerProgress::logged_in) + sum(&WorkerProgress::given_up) >= first;
    });
    summary_.connect_s = seconds_since(start_ns_);
    const double connects = static_cast<double>(sum(&WorkerProgress::connects));
    summary_.connect_per_s = connects / std::max(summary_.connect_s, 1e-9);
    summary_.handshakes_per_s =
        static_cast<double>(sum(&WorkerProgress::handshakes)) / std::max(summary_.connect_s, 1e-9);
    if (died_) return kExitSetup;
    const uint64_t logged_in = sum(&WorkerProgress::logged_in);
    note("connect phase: " + std::to_string(logged_in) + "/" + std::to_string(first) +
         " logged in after " + std::to_string(summary_.connect_s) + " s");
    if (!connected) coordinator_errors_["connect_timeout"] += 1;
    if (logged_in == 0) {
      std::fprintf(stderr, "herald-loadgen: no connection logged in\n");
      return kExitSetup;
    }

    const int64_t send_start = mono_ns();
    control_->send_start_ns.store(send_start, std::memory_order_release);
    set_phase(Phase::kSend);
    switch (o_.scenario) {
      case Scenario::kIdle:
        wait_until(o_.duration_s, [] { return false; });
        summary_.send_s = seconds_since(send_start);
        wait_relogin();
        break;
      case Scenario::kOneToOne:
      case Scenario::kGroup:
        wait_until(o_.duration_s, [] { return false; });
        summary_.send_s = seconds_since(send_start);
        settle(send_start);
        break;
      case Scenario::kReconnectStorm: {
        wait_until(o_.storm_after_s, [] { return false; });
        const int64_t storm_start = mono_ns();
        const uint32_t generation = control_->storm.fetch_add(1, std::memory_order_acq_rel) + 1;
        const uint64_t target = sum(&WorkerProgress::active) - sum(&WorkerProgress::given_up);
        if (wait_until(o_.settle_timeout_s + o_.connect_timeout_s, [&] {
              return all(&WorkerProgress::storm_seen, generation) &&
                     sum(&WorkerProgress::logged_in) >= target;
            })) {
          summary_.reconnect_s = seconds_since(storm_start);
        } else {
          coordinator_errors_["reconnect_timeout"] += 1;
        }
        const double left_s = o_.duration_s - seconds_since(send_start);
        if (left_s > 0) wait_until(left_s, [] { return false; });
        summary_.send_s = seconds_since(send_start);
        settle(send_start);
        break;
      }
      case Scenario::kOfflineDrain: {
        if (!wait_until(o_.duration_s + o_.settle_timeout_s,
                        [&] { return all(&WorkerProgress::send_done, 1); })) {
          coordinator_errors_["send_timeout"] += 1;
        }
        summary_.send_s = seconds_since(send_start);
        const int64_t drain_start = mono_ns();
        set_phase(Phase::kDrain);
        if (wait_until(o_.settle_timeout_s, [&] {
              return sum(&WorkerProgress::delivered) >= sum(&WorkerProgress::expected);
            })) {
          summary_.drain_s = seconds_since(drain_start);
        } else {
          coordinator_errors_["settle_timeout"] += 1;
          summary_.drain_s = seconds_since(drain_start);
        }
        summary_.drain_per_s =
            static_cast<double>(sum(&WorkerProgress::delivered)) / std::max(summary_.drain_s, 1e-9);
        summary_.msgs_per_s = summary_.drain_per_s;
        break;
      }
    }
    return died_ ? kExitSetup : 0;
  }

  // A hold does not end while a worker is reconnecting after a link loss (the dataplane
  // restarted): the run reports how long everyone took to come back.
  void wait_relogin() {
    if (sum(&WorkerProgress::link_pending) == 0) return;
    note("the link was lost: waiting for every client to log in again");
    if (!wait_until(o_.connect_timeout_s,
                    [&] { return sum(&WorkerProgress::link_pending) == 0; })) {
      coordinator_errors_["relogin_timeout"] += 1;
    }
  }

  void settle(int64_t send_start) {
    set_phase(Phase::kSettle);
    // Only once every worker stopped sending: otherwise a message sent and delivered between
    // reading in_flight and reading delivered (its ack still coming) would pass for settled.
    const auto settling = static_cast<uint32_t>(Phase::kSettle);
    if (!wait_until(o_.settle_timeout_s,
                    [&] { return all(&WorkerProgress::phase_seen, settling) && settled(); })) {
      coordinator_errors_["settle_timeout"] += 1;
      if (o_.recheck_reconnect && !died_) recheck();
    }
    summary_.msgs_per_s =
        static_cast<double>(sum(&WorkerProgress::delivered)) / seconds_since(send_start);
  }

  // Everyone drops and logs in again (a drain each), then a second settle.
  void recheck() {
    const uint64_t before = sum(&WorkerProgress::delivered);
    note("settle timed out with " + std::to_string(sum(&WorkerProgress::expected) - before) +
         " deliveries missing: reconnecting everyone");
    const uint32_t generation = control_->storm.fetch_add(1, std::memory_order_acq_rel) + 1;
    const uint64_t target = sum(&WorkerProgress::active) - sum(&WorkerProgress::given_up);
    wait_until(o_.settle_timeout_s + o_.connect_timeout_s, [&] {
      return all(&WorkerProgress::storm_seen, generation) &&
             sum(&WorkerProgress::logged_in) >= target && settled();
    });
    summary_.late = static_cast<int64_t>(sum(&WorkerProgress::delivered) - before);
  }

  int finish(int code) {
    set_phase(Phase::kStop);
    std::vector<WorkerResult> results;
    for (size_t i = 0; i < pipes_.size(); ++i) {
      std::string bytes;
      char buffer[1 << 16];
      for (;;) {
        const ssize_t n = read(pipes_[i], buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        bytes.append(buffer, static_cast<size_t>(n));
      }
      close(pipes_[i]);
      auto r = deserialize(bytes);
      if (!r.ok()) {
        std::fprintf(stderr, "herald-loadgen: worker %zu sent no result\n", i);
        code = kExitSetup;
        continue;
      }
      results.push_back(std::move(*r));
    }
    for (pid_t pid : pids_) {
      int status = 0;
      if (pid > 0) waitpid(pid, &status, 0);
      if (pid > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) code = kExitSetup;
    }
    Summary s = merge(results, topology_);
    s.scenario = o_.scenario;
    s.processes = o_.processes;
    s.connections = o_.connections;
    s.connect_s = summary_.connect_s;
    s.connect_per_s = summary_.connect_per_s;
    s.handshakes_per_s = summary_.handshakes_per_s;
    s.send_s = summary_.send_s;
    s.msgs_per_s = summary_.msgs_per_s;
    s.reconnect_s = summary_.reconnect_s;
    s.drain_s = summary_.drain_s;
    s.drain_per_s = summary_.drain_per_s;
    s.late = summary_.late;
    for (const auto& [name, count] : coordinator_errors_) s.errors[name] += count;
    if (o_.json) {
      std::printf("%s\n", to_json(s).c_str());
    } else {
      std::printf("%s", to_text(s).c_str());
    }
    std::fflush(stdout);
    if (code != 0) return code;
    return exit_code_of(s, o_.restarts_expected);
  }

  const Options& o_;
  uint32_t run_id_ = 0;
  sockaddr_in target_{};
  tls::ClientOptions tls_options_;
  AdminEndpoint admin_;
  Topology topology_;
  Directory directory_;
  std::vector<std::vector<uint8_t>> tokens_;
  ControlBlock* control_ = nullptr;
  std::vector<int> pipes_;
  std::vector<pid_t> pids_;
  bool died_ = false;
  int64_t start_ns_ = 0;
  int64_t next_progress_ns_ = 0;
  Summary summary_;
  std::map<std::string, uint64_t> coordinator_errors_;
};

}  // namespace
}  // namespace herald::tools::loadgen

int main(int argc, char** argv) {
  using namespace herald::tools::loadgen;
  signal(SIGPIPE, SIG_IGN);
  const ParseOutcome parsed = parse_options(std::vector<std::string>(argv, argv + argc));
  if (parsed.exit_code.has_value()) {
    std::fprintf(*parsed.exit_code == 0 ? stdout : stderr, "%s\n", parsed.message.c_str());
    return *parsed.exit_code;
  }
  Coordinator coordinator(parsed.options);
  return coordinator.run();
}
