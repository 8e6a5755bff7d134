// herald-loadgen's DPDK client mode (`--dpdk-port`): the worker's connections on Herald's own
// TCP/IP stack (dataplane/net, dataplane/net/tcp through DpdkTransport's active opens) on a DPDK
// port, typically `net_memif0,role=client,socket=...` joined to the dataplane's memif port. No
// kernel socket and no file descriptor per connection: the only bound on sessions is memory.
//
// One process, one port, one stack, polled on the worker's own thread (the EAL's main lcore);
// idle turns sleep (adaptive), so the worker never starves a shared core. A dataplane restart
// (the port's link down, then up) is survived: the EAL and port stay, the stack is made anew,
// every connection fails as "link_down" and the engine reconnects it (README.md). At exit
// every open connection is reset, paced by ARP round trips.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tools/loadgen/network.h"

namespace herald::tools::loadgen {

// EAL init, the port, the stack. Call once per process (DPDK allows one EAL per process), in
// the worker process (after fork). The target is plan.target; our address the options'.
absl::StatusOr<std::unique_ptr<ClientNetwork>> make_dpdk_network(const WorkerPlan& plan);

}  // namespace herald::tools::loadgen
