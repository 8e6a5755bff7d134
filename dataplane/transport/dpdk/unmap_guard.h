// Keeps a PMD's shared memory mapped while a poller thread may still be reading it.
//
// Why: DPDK 22.11's memif PMD handles a departed peer on the EAL interrupt thread
// (memif_disconnect): it clears the "connected" flag and at once unmaps the rings and buffers,
// with no grace period for a poller already inside rte_eth_rx_burst / rte_eth_tx_burst on them.
// A poller preempted there (two CPUs, several threads) read an unmapped ring and the dataplane
// died with SIGSEGV when a load generator left (seen under ASan in dataplane_dpdk_workers); the
// load generator's client port has the same race when the dataplane dies.
//
// How: quiescent-state RCU (DPDK's rte_rcu_qsbr). Every thread that calls into a PMD registers
// as a poller, reports a quiescent state between its turns (where it holds no ring) and goes
// offline while it sleeps. This module defines `munmap` for the executable (exported with
// -Wl,--export-dynamic-symbol=munmap, so the PMDs, which DPDK loads as plugins, bind to it):
// an unmap on the EAL interrupt thread first waits until every online poller has passed a
// quiescent state, i.e. finished any burst begun before the PMD cleared its flag; later bursts
// see the flag and touch nothing. Unmaps on any other thread go straight through.
#pragma once

#include <cstdint>

namespace herald::dataplane::dpdk {

// Registration of the calling thread as a poller, for the life of the object. Made and used
// on the polling thread only. Ids are taken from a pool (no two pollers share one).
class PmdPoller {
 public:
  PmdPoller();   // registers and goes online
  ~PmdPoller();  // offline and unregistered
  PmdPoller(const PmdPoller&) = delete;
  PmdPoller& operator=(const PmdPoller&) = delete;

  // Between turns: no PMD call in progress on this thread. A load and a store.
  void quiescent();
  // Around a sleep: an offline poller is not waited for. online() has a full fence.
  void offline();
  void online();

 private:
  uint32_t id_;
  bool online_ = false;
};

// Scoped offline(): a sleeping poller holds no ring.
class PmdPollerAsleep {
 public:
  explicit PmdPollerAsleep(PmdPoller& poller) : poller_(poller) { poller_.offline(); }
  ~PmdPollerAsleep() { poller_.online(); }
  PmdPollerAsleep(const PmdPollerAsleep&) = delete;
  PmdPollerAsleep& operator=(const PmdPollerAsleep&) = delete;

 private:
  PmdPoller& poller_;
};

// What the guard did, for tests and logs: unmaps on the interrupt thread that waited for the
// pollers (each one grace period, counted when it ended), the time they waited in all, and
// the unmaps waiting now.
struct UnmapGuardStats {
  uint64_t grace_periods = 0;
  uint64_t waited_ns = 0;
  uint64_t waiting = 0;
};
UnmapGuardStats unmap_guard_stats();

}  // namespace herald::dataplane::dpdk
