// The coordinator and its worker processes share one anonymous MAP_SHARED page set: the
// coordinator moves the phase forward, each worker publishes its progress (lock-free atomics,
// one cache line each), so a settle or drain ends the moment the last delivery lands.
#pragma once

#include <atomic>
#include <cstdint>

#include "tools/loadgen/options.h"

namespace herald::tools::loadgen {

enum class Phase : uint32_t {
  kConnect = 0,  // connect the scenario's first connections and log them in
  kSend = 1,     // scenario traffic (idle: hold)
  kSettle = 2,   // no new messages; resends continue until every acked message is delivered
  kDrain = 3,    // offline-drain: the recipients connect
  kStop = 4,     // report and exit
};

struct alignas(64) WorkerProgress {
  std::atomic<uint64_t> logged_in{0};  // sessions up now
  std::atomic<uint64_t> active{0};     // clients meant to be connected in this phase
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> handshakes{0};
  std::atomic<uint64_t> logins{0};
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> expected{0};    // deliveries the acked messages call for
  std::atomic<uint64_t> delivered{0};   // first deliveries of this run's messages
  std::atomic<uint64_t> in_flight{0};   // sent, not acked, not given up
  std::atomic<uint64_t> given_up{0};    // clients that stopped (refused credentials)
  std::atomic<uint32_t> send_done{0};   // offline-drain: every sender sent and got its acks
  std::atomic<uint32_t> storm_seen{0};  // the storm generation this worker has acted on
  // 1 from a link loss (the DPDK mode's dataplane restarted) until every active client is
  // logged in again: a phase does not end on a half-connected worker.
  std::atomic<uint32_t> link_pending{0};
  // The phase this worker has entered (published after the turn that entered it): once it is
  // kSettle no new message leaves this worker, so a settle check cannot race a last send.
  std::atomic<uint32_t> phase_seen{0};
  std::atomic<uint32_t> exited{0};
};

struct ControlBlock {
  std::atomic<uint32_t> phase{0};
  std::atomic<int64_t> send_start_ns{0};  // CLOCK_MONOTONIC: when kSend began
  std::atomic<uint32_t> storm{0};         // bumped: every worker drops and reconnects all
  WorkerProgress workers[kMaxProcesses];
};

}  // namespace herald::tools::loadgen
