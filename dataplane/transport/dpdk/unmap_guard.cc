#include "dataplane/transport/dpdk/unmap_guard.h"

#include <dlfcn.h>
#include <rte_interrupts.h>
#include <rte_rcu_qsbr.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bitset>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "platform/assert/assert.h"
#include "platform/log/log.h"

namespace herald::dataplane::dpdk {
namespace {

// Pollers at once in a process: a dataplane's workers, or a loadgen's network thread, or a
// test's loops. rte_rcu_qsbr keeps a cache line per possible thread (64 KiB here).
constexpr uint32_t kMaxPollers = 1024;

struct Guard {
  std::mutex mu;  // registration only (rare); the read side never takes it
  std::bitset<kMaxPollers> taken;
  rte_rcu_qsbr* qsbr = nullptr;
};

Guard& guard() {
  static Guard* g = new Guard;  // never destroyed: munmap may run during exit
  return *g;
}

// Published once the QSBR variable exists; munmap reads it without a lock.
std::atomic<rte_rcu_qsbr*> g_qsbr{nullptr};
std::atomic<uint64_t> g_grace_periods{0};
std::atomic<uint64_t> g_waited_ns{0};
std::atomic<uint64_t> g_waiting{0};

using MunmapFn = int (*)(void*, size_t);
// The next munmap in lookup order (AddressSanitizer's interceptor or libc's), resolved with the
// first registration, long before any PMD unmaps; until then the system call itself.
std::atomic<MunmapFn> g_next_munmap{nullptr};

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Waits until every online poller has passed a quiescent state after now. Polls with short
// sleeps rather than spinning: on two CPUs the poller waited for may need the CPU to finish.
void wait_for_pollers(rte_rcu_qsbr* qsbr) {
  const uint64_t start = monotonic_ns();
  g_waiting.fetch_add(1, std::memory_order_relaxed);
  const uint64_t token = rte_rcu_qsbr_start(qsbr);
  while (rte_rcu_qsbr_check(qsbr, token, false) == 0) {
    const timespec ts{0, 20'000};
    nanosleep(&ts, nullptr);
  }
  const uint64_t waited = monotonic_ns() - start;
  g_waiting.fetch_sub(1, std::memory_order_relaxed);
  g_grace_periods.fetch_add(1, std::memory_order_relaxed);
  g_waited_ns.fetch_add(waited, std::memory_order_relaxed);
  HLOG_RATE_LIMITED(kInfo, "dpdk.unmap_waited_for_pollers", 10).kv("waited_us", waited / 1000);
}

}  // namespace

PmdPoller::PmdPoller() {
  Guard& g = guard();
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.qsbr == nullptr) {
      g_next_munmap.store(reinterpret_cast<MunmapFn>(dlsym(RTLD_NEXT, "munmap")));
      const size_t bytes = rte_rcu_qsbr_get_memsize(kMaxPollers);
      // The size is a multiple of the cache line (rte_rcu_qsbr_get_memsize rounds it up).
      void* memory = std::aligned_alloc(RTE_CACHE_LINE_SIZE, bytes);
      HERALD_CHECK(memory != nullptr, "unmap guard: no memory for the QSBR variable");
      auto* qsbr = static_cast<rte_rcu_qsbr*>(memory);
      HERALD_CHECK(rte_rcu_qsbr_init(qsbr, kMaxPollers) == 0, "unmap guard: rte_rcu_qsbr_init");
      g.qsbr = qsbr;
      g_qsbr.store(qsbr, std::memory_order_release);
    }
    uint32_t id = 0;
    while (id < kMaxPollers && g.taken[id]) ++id;
    HERALD_CHECK(id < kMaxPollers, "unmap guard: more than 1024 PMD pollers");
    g.taken[id] = true;
    id_ = id;
    HERALD_CHECK(rte_rcu_qsbr_thread_register(g.qsbr, id_) == 0, "unmap guard: register");
  }
  online();
}

PmdPoller::~PmdPoller() {
  offline();
  Guard& g = guard();
  std::lock_guard<std::mutex> lock(g.mu);
  (void)rte_rcu_qsbr_thread_unregister(g.qsbr, id_);
  g.taken[id_] = false;
}

void PmdPoller::quiescent() {
  rte_rcu_qsbr_quiescent(g_qsbr.load(std::memory_order_relaxed), id_);
}

void PmdPoller::offline() {
  if (!online_) return;
  online_ = false;
  rte_rcu_qsbr_thread_offline(g_qsbr.load(std::memory_order_relaxed), id_);
}

void PmdPoller::online() {
  if (online_) return;
  online_ = true;
  rte_rcu_qsbr_thread_online(g_qsbr.load(std::memory_order_relaxed), id_);
}

UnmapGuardStats unmap_guard_stats() {
  return {g_grace_periods.load(std::memory_order_relaxed),
          g_waited_ns.load(std::memory_order_relaxed), g_waiting.load(std::memory_order_relaxed)};
}

}  // namespace herald::dataplane::dpdk

// The executable's munmap (see unmap_guard.h). Only the EAL interrupt thread waits; it runs the
// PMDs' link events and never holds anything a poller waits on.
extern "C" int munmap(void* addr, size_t length) noexcept {
  using namespace herald::dataplane::dpdk;
  if (rte_rcu_qsbr* qsbr = g_qsbr.load(std::memory_order_acquire);
      qsbr != nullptr && rte_thread_is_intr() != 0) {
    wait_for_pollers(qsbr);
  }
  if (MunmapFn next = g_next_munmap.load(std::memory_order_relaxed); next != nullptr) {
    return next(addr, length);
  }
  return static_cast<int>(syscall(SYS_munmap, addr, length));
}
