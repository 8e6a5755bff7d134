// herald-controlplane: command line, config loading and the process lifetime.
//   herald-controlplane [--config FILE] [--data-dir DIR] [--check-config] [--print-config]
// Exit status: 0 after a clean stop, 2 for a bad command line or config, 1 for other failures.
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "controlplane/controlplane.h"
#include "platform/config/config.h"
#include "platform/log/log.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadConfig = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"herald-controlplane: registration, config, storage and admin API of a Herald node"};
  std::string config_path;
  std::string data_dir;
  bool check_only = false;
  bool print_config = false;
  app.add_option("--config", config_path, "node config (JSON); embedded defaults if omitted")
      ->check(CLI::ExistingFile);
  app.add_option("--data-dir", data_dir, "storage directory (overrides node.data_dir)");
  app.add_flag("--check-config", check_only, "validate the config and exit");
  app.add_flag("--print-config", print_config,
               "print the effective config (defaults filled in) as JSON and exit");
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
    std::fprintf(stderr, "herald-controlplane: invalid config: %s\n",
                 std::string(config.status().message()).c_str());
    return kExitBadConfig;
  }
  if (print_config) {
    auto json = herald::config::config_to_json(*config);
    if (!json.ok()) {
      std::fprintf(stderr, "herald-controlplane: %s\n", json.status().ToString().c_str());
      return kExitFailure;
    }
    std::fputs(json->c_str(), stdout);
    return 0;
  }
  if (check_only) {
    std::printf("config ok: %s\n",
                config_path.empty() ? "(embedded defaults)" : config_path.c_str());
    return 0;
  }
  herald::config::apply_log_settings(*config);

  auto cp = herald::controlplane::ControlPlane::start(
      std::move(*config), {.data_dir = data_dir, .config_from_file = !config_path.empty()});
  if (!cp.ok()) {
    HLOG_ERROR("controlplane.start_failed").kv("error", cp.status().ToString());
    return kExitFailure;
  }
  (*cp)->run();
  return 0;
}
