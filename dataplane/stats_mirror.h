// The dataplane's counters in the control plane's counters segment: each worker mirrors its
// layers' plain stats structs (transport, TLS, sessions, routing, store, mesh) as dp.* entries
// in its own thread block, about every 100 ms, from its own thread.
//
//   StatsMirror mirror({.worker = i, .with_directory = i == 0});
//   mirror.attach(link->counters_fd.get());           // a new link: (re-)register every name
//   if (mirror.due(now_ns)) mirror.publish(now_ns, collect_worker_stats(...));
//   mirror.detach();                                  // the control plane went away
//
// Counters are published as deltas since the last publish, never as totals: a new segment (the
// control plane restarted) receives what happened since the last publish into the old one, so
// the sum over segments is each event once; re-attaching to the same segment continues it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/net/net_stats.h"
#include "dataplane/net/tcp/stats.h"
#include "dataplane/process_memory.h"
#include "dataplane/routing/device_lists.h"
#include "dataplane/routing/directory.h"
#include "dataplane/routing/group_cache.h"
#include "dataplane/routing/message_ids.h"
#include "dataplane/routing/router.h"
#include "dataplane/routing/store_client.h"
#include "dataplane/routing/worker_mesh.h"
#include "dataplane/session/session_layer.h"
#include "dataplane/session/session_stats.h"
#include "dataplane/tls/tls_layer.h"
#include "dataplane/tls/tls_stats.h"
#include "dataplane/transport/dpdk/dpdk_transport.h"
#include "dataplane/transport/dpdk/loop_stats.h"
#include "dataplane/transport/kernel/kernel_transport.h"
#include "platform/counters/counters.h"
#include "platform/counters/segment.h"

namespace herald::dataplane {

// Thread block 0 is the control plane's own (controlplane.cc registers thread(0)); worker i
// writes block kFirstWorkerCounterBlock + i. Claims are per process, so nothing but this
// convention keeps the two planes out of each other's block.
inline constexpr uint32_t kFirstWorkerCounterBlock = 1;

// X(field, stable name): current values a worker reads off its parts at each publish.
#define HERALD_WORKER_GAUGES(X)                                    \
  X(sessions, "worker.sessions")                                   \
  X(transport_connections, "transport.connections")                \
  X(transport_shards, "transport.shards")                          \
  X(transport_table_slots, "transport.table_slots")                \
  X(tls_connections, "tls.connections")                            \
  X(router_sessions, "router.sessions")                            \
  X(pending_messages, "router.pending_messages")                   \
  X(store_pending_appends, "store.pending_appends")                \
  X(store_held_appends, "store.held_appends")                      \
  X(store_held_bytes, "store.held_bytes")                          \
  X(store_held_records, "store.held_records")                      \
  X(store_drains_in_progress, "store.drains_in_progress")          \
  X(device_lists_cached, "device_lists.cached")                    \
  X(device_list_requests_pending, "device_lists.pending_requests") \
  X(device_list_waiters, "device_lists.waiters")                   \
  X(groups_cached, "groups.cached")

struct WorkerGauges {
#define HERALD_WORKER_GAUGE_FIELD(field, name) uint64_t field = 0;
  HERALD_WORKER_GAUGES(HERALD_WORKER_GAUGE_FIELD)
#undef HERALD_WORKER_GAUGE_FIELD
};

// backend dpdk: the process's mbuf pool (shared by the workers, so worker 0 alone publishes
// it; the counters segment sums a gauge over the threads).
struct DpdkPoolGauges {
  uint64_t mbufs_free = 0;    // in the pool's ring and the lcore caches
  uint64_t mbufs_in_use = 0;  // in rx rings, tx rings, loops, the stack (a leak grows this)
};

// What the worker loop counts itself (WorkerStatus), as plain values.
struct WorkerLoopStats {
  uint64_t loop_turns = 0;
  uint64_t sleeps = 0;
  uint64_t empty_turns = 0;
};

// One worker's stats as the mirror reads them. Every pointer must stay valid during publish();
// a null one is skipped (its entries stay where they were). The directory is shared by the
// workers: exactly one worker (with_directory) mirrors it.
struct WorkerStatsView {
  const KernelTransportStats* transport = nullptr;
  const TlsStats* tls = nullptr;
  const SessionStats* session = nullptr;
  const routing::WorkerRouterStats* router = nullptr;
  const StoreClientStats* store = nullptr;
  const MeshEndpointStats* mesh = nullptr;
  const routing::DedupStats* dedup = nullptr;
  const routing::DeviceListStats* device_lists = nullptr;
  const routing::GroupCacheStats* groups = nullptr;
  const routing::MessageIdStats* message_ids = nullptr;
  const routing::DirectoryStats* directory = nullptr;
  const WorkerLoopStats* loop = nullptr;
  const WorkerGauges* gauges = nullptr;
  // backend dpdk (StatsMirrorOptions::with_dpdk): dp.net.*, dp.tcp.*, dp.dpdk.*.
  const net::NetStats* net = nullptr;
  const net::tcp::TcpStats* tcp = nullptr;
  const dpdk::LoopStatsSnapshot* dpdk_loop = nullptr;
  const dpdk::DpdkTransportStats* dpdk_transport = nullptr;
  const DpdkPoolGauges* dpdk_pool = nullptr;  // dp.dpdk.mempool.*: worker 0 only
  // The process's heap and RSS (dp.process.*, either backend): worker 0 only.
  const ProcessMemoryGauges* process = nullptr;
};

// Storage for what collect_worker_stats() computes (gauges, a copy of the directory's stats).
struct WorkerStatsScratch {
  WorkerGauges gauges;
  WorkerLoopStats loop;
  routing::DirectoryStats directory;
  dpdk::LoopStatsSnapshot dpdk_loop;  // the port loop's relaxed atomics, read as plain values
  DpdkPoolGauges dpdk_pool;
  ProcessMemoryGauges process;
};

// The view of a worker's parts (directory: null unless this worker mirrors it; it takes the
// directory's write lock once). `transport`: dp.transport.* come from a KernelTransport's
// stats; any other backend gives the connections gauge only (the dpdk fields are set by the
// caller).
WorkerStatsView collect_worker_stats(const Transport& transport, const TlsLayer& tls,
                                     const SessionLayer& sessions,
                                     const routing::WorkerRouter& router, const StoreClient& store,
                                     const MeshEndpoint& mesh, const WorkerLoopStats& loop,
                                     const routing::Directory* directory,
                                     WorkerStatsScratch& scratch);

struct StatsMirrorOptions {
  uint16_t worker = 0;
  bool with_directory = false;  // mirror dp.directory.* (one worker of the process)
  bool with_dpdk = false;       // mirror dp.net.*, dp.tcp.*, dp.dpdk.* (backend dpdk)
  uint64_t interval_ns = 100'000'000;
  counters::HistogramSpec store_latency_spec{};  // ns, up to 68.7 s by default
};

// What the mirror itself counts (logged, and visible in tests).
struct StatsMirrorStats {
  uint64_t attaches = 0;
  uint64_t attach_failures = 0;        // no segment, no thread block: nothing mirrored
  uint64_t registration_failures = 0;  // names not registered (segment full, lock stuck)
  uint64_t publishes = 0;
};

class StatsMirror {
 public:
  explicit StatsMirror(StatsMirrorOptions options);
  ~StatsMirror();
  StatsMirror(const StatsMirror&) = delete;
  StatsMirror& operator=(const StatsMirror&) = delete;

  // Maps the segment behind `counters_fd` (duplicated: the caller keeps its descriptor),
  // claims this worker's thread block and registers every name. Replaces any previous
  // attachment; the published baselines are kept (deltas continue). An error leaves the mirror
  // detached. A name that fails to register is not published (its deltas wait for the next
  // segment); the others still work.
  absl::Status attach(int counters_fd);
  void detach();
  bool attached() const { return segment_.has_value(); }

  // True when interval_ns passed since the last publish (and attached).
  bool due(uint64_t now_ns) const;
  // Writes every counter's delta since the last publish and every gauge's value. Detached: a
  // no-op, and the deltas wait for the next segment.
  void publish(uint64_t now_ns, const WorkerStatsView& view);
  // One store append's latency (request sent to outcome received); dropped while detached.
  void record_store_latency(uint64_t latency_ns);

  // Every name this mirror registers, in order (dp.*): the operator interface.
  const std::vector<std::string>& names() const { return names_; }
  const StatsMirrorStats& stats() const { return stats_; }

  // Where an entry's value lives in a view (a stats struct and a byte offset into it).
  enum class Source : uint8_t {
    kTransport,
    kTls,
    kSession,
    kRouter,
    kStore,
    kMesh,
    kDedup,
    kDeviceLists,
    kGroups,
    kMessageIds,
    kDirectory,
    kLoop,
    kGauges,
    kNet,
    kTcp,
    kDpdkLoop,
    kDpdkTransport,
    kDpdkPool,
    kProcess,
  };
  static constexpr const char* kStoreLatencyName = "dp.store.append_latency_ns";

 private:
  struct Entry {
    Source source;
    uint32_t offset_bytes;
    bool gauge;
    counters::CounterHandle counter;  // default (discard line) until registered
    counters::GaugeHandle gauge_handle;
    uint64_t published = 0;  // counters: what the segments have been given so far
  };
  void add(std::string name, Source source, size_t offset_bytes, bool gauge);
  void add_entries();

  StatsMirrorOptions options_;
  std::vector<std::string> names_;  // by entry, then the latency histogram
  std::vector<Entry> entries_;
  std::optional<counters::CountersSegment> segment_;
  std::optional<counters::ThreadCounters> thread_;
  counters::HistogramHandle store_latency_;
  uint64_t last_publish_ns_ = 0;
  StatsMirrorStats stats_;
};

}  // namespace herald::dataplane
