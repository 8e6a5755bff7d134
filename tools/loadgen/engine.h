// One worker process's event loop: its slice of the accounts, one non-blocking TLS connection
// each (epoll, edge-triggered; writes batched once per connection per turn), the scenario's
// traffic, reconnects with backoff and resends with the same client message id, and the
// bookkeeping of every ack and delivery the coordinator's verdict needs.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "platform/tls/context.h"
#include "tools/loadgen/control.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/protocol.h"
#include "tools/loadgen/results.h"

namespace herald::tools::loadgen {

// Everything a worker needs, built by the coordinator before it forks.
struct WorkerPlan {
  const Options* options = nullptr;
  uint32_t run_id = 0;
  Topology topology;
  uint32_t worker = 0;
  uint32_t begin = 0;  // accounts [begin, end) are this worker's
  uint32_t end = 0;
  sockaddr_in target{};
  std::shared_ptr<tls::ClientContext> tls;
  std::string server_name;  // SNI / name check; empty for an address
  // A fresh protocol for account `index` (the engine keeps it for the client's life).
  std::function<std::unique_ptr<ClientProtocol>(uint32_t index)> make_protocol;
};

// Runs until the coordinator's kStop; returns what this worker saw.
WorkerResult run_worker(const WorkerPlan& plan, ControlBlock& control);

}  // namespace herald::tools::loadgen
