// herald-dataplane: command line, config loading, signals and the process lifetime.
//   herald-dataplane [--config FILE] [--data-dir DIR] [--check-config]
// Exit status: 0 after a clean stop (SIGINT, SIGTERM), 2 for a bad command line or config, 1
// for other failures.
#include <signal.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "dataplane/dataplane.h"
#include "platform/config/config.h"
#include "platform/log/log.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadConfig = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"herald-dataplane: the chat servers of a Herald node"};
  std::string config_path;
  std::string data_dir;
  bool check_only = false;
  app.add_option("--config", config_path, "node config (JSON); embedded defaults if omitted")
      ->check(CLI::ExistingFile);
  app.add_option("--data-dir", data_dir, "data directory (overrides node.data_dir)");
  app.add_flag("--check-config", check_only, "validate the config and exit");
  app.set_version_flag("--version", HERALD_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadConfig;
  }
  auto config = config_path.empty()
                    ? absl::StatusOr<herald::config::Config>(herald::config::default_config())
                    : herald::config::load_config(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "herald-dataplane: invalid config: %s\n",
                 std::string(config.status().message()).c_str());
    return kExitBadConfig;
  }
  if (check_only) {
    std::printf("config ok: %s\n",
                config_path.empty() ? "(embedded defaults)" : config_path.c_str());
    return 0;
  }
  herald::config::apply_log_settings(*config);

  // SIGINT and SIGTERM are taken by sigwait below, in this thread only: blocked before any
  // thread starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto dp = herald::dataplane::Dataplane::start(std::move(*config), {.data_dir = data_dir});
  if (!dp.ok()) {
    HLOG_ERROR("dataplane.start_failed").kv("error", dp.status().ToString());
    return kExitFailure;
  }
  int received = 0;
  sigwait(&signals, &received);
  HLOG_INFO("dataplane.stopping").kv("signal", uint64_t(received));
  (*dp)->stop();
  (*dp)->wait();
  HLOG_INFO("dataplane.stopped");
  return 0;
}
