// A Mosquitto broker with TLS as a child process, started through tools/mosquitto/start-broker,
// for the MQTT interop test and benchmark (and herald-loadgen's side-by-side runs).
//
//   auto broker = MosquittoBroker::start({.script = "tools/mosquitto/start-broker"});
//   (*broker)->port(); (*broker)->cert_file();   // connect with TlsStream, Trust::pinned
//   // the destructor stops the broker and removes its directory
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herald::tools::mosquitto {

struct MosquittoBrokerOptions {
  std::string script;  // the path of tools/mosquitto/start-broker
  uint16_t port = 0;   // 0: a free loopback port, picked here
  std::string dir;     // empty: a new temporary directory, removed when the broker stops
  std::vector<std::string> settings;  // extra mosquitto.conf lines (start-broker --set)
  uint32_t ready_timeout_ms = 20'000;
};

// The mosquitto binary: on PATH, or in /usr/sbin or /usr/local/sbin (Debian installs it in
// /usr/sbin). NotFound when it is not installed.
absl::StatusOr<std::string> find_mosquitto();

class MosquittoBroker {
 public:
  // Starts the script and waits for its ready line. NotFound when mosquitto is not installed,
  // Unavailable when the broker did not come up (the message holds the script's stderr tail),
  // DeadlineExceeded after ready_timeout_ms. With port 0, a port taken between the pick and the
  // broker's bind is retried with another.
  static absl::StatusOr<std::unique_ptr<MosquittoBroker>> start(MosquittoBrokerOptions options);
  ~MosquittoBroker();  // SIGTERM, then SIGKILL after 5 s; removes a temporary directory
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string cert_file() const { return dir_ + "/cert.pem"; }
  std::string log_file() const { return dir_ + "/mosquitto.log"; }
  pid_t pid() const { return pid_; }

 private:
  MosquittoBroker(pid_t pid, uint16_t port, std::string dir, bool remove_dir)
      : pid_(pid), port_(port), dir_(std::move(dir)), remove_dir_(remove_dir) {}

  pid_t pid_;
  uint16_t port_;
  std::string dir_;
  bool remove_dir_;
};

}  // namespace herald::tools::mosquitto
