// The dataplane's stats mirror: stable dp.* names for every worker stats field, registered in
// the control plane's counters segment, and the periodic delta/gauge publication.
#include "dataplane/stats_mirror.h"

#include <fcntl.h>

#include <cctype>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "platform/ipc/envelope.h"
#include "platform/log/log.h"
#include "platform/shm/unique_fd.h"

namespace herald::dataplane {
namespace {

using Source = StatsMirror::Source;

// A plain stats struct's field with its stable name: the field's own identifier, so a name is
// written once (the struct) and can never disagree with it.
template <typename T>
struct Field {
  const char* name;
  uint64_t T::*member;
};
#define HERALD_FIELD(type, field) \
  Field<type> {                   \
#field, &type::field          \
  }

// clang-format off
constexpr Field<KernelTransportStats> kTransportFields[] = {
    HERALD_FIELD(KernelTransportStats, accepts), HERALD_FIELD(KernelTransportStats, refused_over_limit), HERALD_FIELD(KernelTransportStats, accept_errors), HERALD_FIELD(KernelTransportStats, table_full), HERALD_FIELD(KernelTransportStats, close_errors), HERALD_FIELD(KernelTransportStats, bytes_in), HERALD_FIELD(KernelTransportStats, bytes_out), HERALD_FIELD(KernelTransportStats, recv_buffers_exhausted), HERALD_FIELD(KernelTransportStats, recv_rearms), HERALD_FIELD(KernelTransportStats, sends), HERALD_FIELD(KernelTransportStats, send_requests), HERALD_FIELD(KernelTransportStats, partial_sends), HERALD_FIELD(KernelTransportStats, send_chunks_allocated), HERALD_FIELD(KernelTransportStats, queue_full), HERALD_FIELD(KernelTransportStats, writable_events), HERALD_FIELD(KernelTransportStats, paused_bytes), HERALD_FIELD(KernelTransportStats, unknown_id_calls), HERALD_FIELD(KernelTransportStats, linger_timeouts),
};
constexpr Field<routing::WorkerRouterStats> kRouterFields[] = {
    HERALD_FIELD(routing::WorkerRouterStats, attaches), HERALD_FIELD(routing::WorkerRouterStats, revoked_closed), HERALD_FIELD(routing::WorkerRouterStats, detaches), HERALD_FIELD(routing::WorkerRouterStats, logins_refused), HERALD_FIELD(routing::WorkerRouterStats, replaced_local), HERALD_FIELD(routing::WorkerRouterStats, replaced_remote), HERALD_FIELD(routing::WorkerRouterStats, handover_send_failed), HERALD_FIELD(routing::WorkerRouterStats, handover_timeouts), HERALD_FIELD(routing::WorkerRouterStats, handover_records_out), HERALD_FIELD(routing::WorkerRouterStats, handover_records_in), HERALD_FIELD(routing::WorkerRouterStats, handover_outcomes), HERALD_FIELD(routing::WorkerRouterStats, held_for_handover), HERALD_FIELD(routing::WorkerRouterStats, resends_joined_remote), HERALD_FIELD(routing::WorkerRouterStats, remote_join_timeouts), HERALD_FIELD(routing::WorkerRouterStats, messages), HERALD_FIELD(routing::WorkerRouterStats, resends_acked), HERALD_FIELD(routing::WorkerRouterStats, resends_joined), HERALD_FIELD(routing::WorkerRouterStats, server_acks), HERALD_FIELD(routing::WorkerRouterStats, acks_all_devices), HERALD_FIELD(routing::WorkerRouterStats, acks_durable), HERALD_FIELD(routing::WorkerRouterStats, acks_ephemeral), HERALD_FIELD(routing::WorkerRouterStats, errors_recipient_not_found), HERALD_FIELD(routing::WorkerRouterStats, errors_not_group_member), HERALD_FIELD(routing::WorkerRouterStats, errors_queue_full), HERALD_FIELD(routing::WorkerRouterStats, errors_store_unavailable), HERALD_FIELD(routing::WorkerRouterStats, errors_overloaded), HERALD_FIELD(routing::WorkerRouterStats, errors_invalid), HERALD_FIELD(routing::WorkerRouterStats, acks_no_recipients), HERALD_FIELD(routing::WorkerRouterStats, held_for_device_lists), HERALD_FIELD(routing::WorkerRouterStats, delivered_local), HERALD_FIELD(routing::WorkerRouterStats, delivered_remote), HERALD_FIELD(routing::WorkerRouterStats, delivery_refused), HERALD_FIELD(routing::WorkerRouterStats, appends), HERALD_FIELD(routing::WorkerRouterStats, queue_full_partial), HERALD_FIELD(routing::WorkerRouterStats, outcomes_unknown), HERALD_FIELD(routing::WorkerRouterStats, push_hints), HERALD_FIELD(routing::WorkerRouterStats, device_acks), HERALD_FIELD(routing::WorkerRouterStats, device_acks_pending), HERALD_FIELD(routing::WorkerRouterStats, device_acks_forwarded), HERALD_FIELD(routing::WorkerRouterStats, device_acks_stored), HERALD_FIELD(routing::WorkerRouterStats, drains_started), HERALD_FIELD(routing::WorkerRouterStats, drains_refused), HERALD_FIELD(routing::WorkerRouterStats, drain_batches), HERALD_FIELD(routing::WorkerRouterStats, drained_sent), HERALD_FIELD(routing::WorkerRouterStats, drain_errors), HERALD_FIELD(routing::WorkerRouterStats, drain_batches_stale), HERALD_FIELD(routing::WorkerRouterStats, mesh_frames_delivered), HERALD_FIELD(routing::WorkerRouterStats, mesh_frames_dropped), HERALD_FIELD(routing::WorkerRouterStats, mesh_closes), HERALD_FIELD(routing::WorkerRouterStats, mesh_closes_gone), HERALD_FIELD(routing::WorkerRouterStats, mesh_malformed), HERALD_FIELD(routing::WorkerRouterStats, receipts), HERALD_FIELD(routing::WorkerRouterStats, receipts_dropped), HERALD_FIELD(routing::WorkerRouterStats, receipts_held_for_device_lists), HERALD_FIELD(routing::WorkerRouterStats, receipts_stored), HERALD_FIELD(routing::WorkerRouterStats, receipts_stored_devices), HERALD_FIELD(routing::WorkerRouterStats, receipts_drained), HERALD_FIELD(routing::WorkerRouterStats, receipts_dropped_device_list), HERALD_FIELD(routing::WorkerRouterStats, receipts_dropped_store), HERALD_FIELD(routing::WorkerRouterStats, receipts_dropped_queue_full), HERALD_FIELD(routing::WorkerRouterStats, typing_forwarded), HERALD_FIELD(routing::WorkerRouterStats, presence_updates), HERALD_FIELD(routing::WorkerRouterStats, presence_forwarded), HERALD_FIELD(routing::WorkerRouterStats, presence_dropped), HERALD_FIELD(routing::WorkerRouterStats, presence_subscribes), HERALD_FIELD(routing::WorkerRouterStats, group_ops_unavailable), HERALD_FIELD(routing::WorkerRouterStats, device_list_requests_dropped), HERALD_FIELD(routing::WorkerRouterStats, drain_kicks_sent), HERALD_FIELD(routing::WorkerRouterStats, drain_kicks_restarted), HERALD_FIELD(routing::WorkerRouterStats, drain_kicks_from_store),
};
constexpr Field<StoreClientStats> kStoreFields[] = {
    HERALD_FIELD(StoreClientStats, appends), HERALD_FIELD(StoreClientStats, cancelled_locally), HERALD_FIELD(StoreClientStats, outcomes_unknown), HERALD_FIELD(StoreClientStats, outcomes_other_instance), HERALD_FIELD(StoreClientStats, appends_resent), HERALD_FIELD(StoreClientStats, appends_resent_timeout), HERALD_FIELD(StoreClientStats, appends_too_large), HERALD_FIELD(StoreClientStats, device_acks), HERALD_FIELD(StoreClientStats, device_acks_unknown), HERALD_FIELD(StoreClientStats, cancel_devices), HERALD_FIELD(StoreClientStats, cancels_dropped), HERALD_FIELD(StoreClientStats, store_acks), HERALD_FIELD(StoreClientStats, store_ack_ids), HERALD_FIELD(StoreClientStats, store_acks_dropped), HERALD_FIELD(StoreClientStats, records_dropped), HERALD_FIELD(StoreClientStats, push_hints), HERALD_FIELD(StoreClientStats, push_hints_dropped), HERALD_FIELD(StoreClientStats, drains), HERALD_FIELD(StoreClientStats, drains_refused), HERALD_FIELD(StoreClientStats, drains_superseded), HERALD_FIELD(StoreClientStats, drain_requests), HERALD_FIELD(StoreClientStats, drain_busy), HERALD_FIELD(StoreClientStats, drain_timeouts), HERALD_FIELD(StoreClientStats, drain_resends), HERALD_FIELD(StoreClientStats, drain_batches), HERALD_FIELD(StoreClientStats, drain_messages), HERALD_FIELD(StoreClientStats, drain_repeats), HERALD_FIELD(StoreClientStats, drain_responses_dropped), HERALD_FIELD(StoreClientStats, drain_responses_other_instance), HERALD_FIELD(StoreClientStats, malformed), HERALD_FIELD(StoreClientStats, unexpected), HERALD_FIELD(StoreClientStats, pushes_unhandled), HERALD_FIELD(StoreClientStats, seq_gaps), HERALD_FIELD(StoreClientStats, commits), HERALD_FIELD(StoreClientStats, ring_full), HERALD_FIELD(StoreClientStats, ring_corrupt), HERALD_FIELD(StoreClientStats, attaches), HERALD_FIELD(StoreClientStats, detaches), HERALD_FIELD(StoreClientStats, controlplane_restarts), HERALD_FIELD(StoreClientStats, heartbeats_out),
};
constexpr Field<MeshEndpointStats> kMeshFields[] = {
    HERALD_FIELD(MeshEndpointStats, sent), HERALD_FIELD(MeshEndpointStats, sent_direct), HERALD_FIELD(MeshEndpointStats, overflowed), HERALD_FIELD(MeshEndpointStats, overflow_moved), HERALD_FIELD(MeshEndpointStats, refused_overflow_full), HERALD_FIELD(MeshEndpointStats, refused_too_large), HERALD_FIELD(MeshEndpointStats, refused_bad_kind), HERALD_FIELD(MeshEndpointStats, commits), HERALD_FIELD(MeshEndpointStats, received), HERALD_FIELD(MeshEndpointStats, malformed), HERALD_FIELD(MeshEndpointStats, ring_corrupt), HERALD_FIELD(MeshEndpointStats, sleeps), HERALD_FIELD(MeshEndpointStats, sleeps_aborted),
};
constexpr Field<routing::DedupStats> kDedupFields[] = {
    HERALD_FIELD(routing::DedupStats, inserted), HERALD_FIELD(routing::DedupStats, resends_pending), HERALD_FIELD(routing::DedupStats, resends_acked), HERALD_FIELD(routing::DedupStats, acked), HERALD_FIELD(routing::DedupStats, forgotten), HERALD_FIELD(routing::DedupStats, unknown), HERALD_FIELD(routing::DedupStats, duplicate_inserts), HERALD_FIELD(routing::DedupStats, evicted_window), HERALD_FIELD(routing::DedupStats, evicted_total), HERALD_FIELD(routing::DedupStats, evicted_pending), HERALD_FIELD(routing::DedupStats, exported), HERALD_FIELD(routing::DedupStats, imported),
};
constexpr Field<routing::DeviceListStats> kDeviceListFields[] = {
    HERALD_FIELD(routing::DeviceListStats, hits), HERALD_FIELD(routing::DeviceListStats, unknown_hits), HERALD_FIELD(routing::DeviceListStats, misses), HERALD_FIELD(routing::DeviceListStats, busy_requests), HERALD_FIELD(routing::DeviceListStats, busy_waiters), HERALD_FIELD(routing::DeviceListStats, requests_sent), HERALD_FIELD(routing::DeviceListStats, request_send_failed), HERALD_FIELD(routing::DeviceListStats, responses), HERALD_FIELD(routing::DeviceListStats, responses_stale), HERALD_FIELD(routing::DeviceListStats, responses_other_instance), HERALD_FIELD(routing::DeviceListStats, responses_rejected), HERALD_FIELD(routing::DeviceListStats, malformed), HERALD_FIELD(routing::DeviceListStats, too_many_devices), HERALD_FIELD(routing::DeviceListStats, timeouts), HERALD_FIELD(routing::DeviceListStats, waiters_answered), HERALD_FIELD(routing::DeviceListStats, pushes_applied), HERALD_FIELD(routing::DeviceListStats, pushes_stale), HERALD_FIELD(routing::DeviceListStats, pushes_uncached), HERALD_FIELD(routing::DeviceListStats, evictions), HERALD_FIELD(routing::DeviceListStats, cleared),
};
constexpr Field<routing::GroupCacheStats> kGroupCacheFields[] = {
    HERALD_FIELD(routing::GroupCacheStats, applied), HERALD_FIELD(routing::GroupCacheStats, deleted), HERALD_FIELD(routing::GroupCacheStats, deleted_unknown), HERALD_FIELD(routing::GroupCacheStats, stale), HERALD_FIELD(routing::GroupCacheStats, too_large), HERALD_FIELD(routing::GroupCacheStats, full), HERALD_FIELD(routing::GroupCacheStats, malformed), HERALD_FIELD(routing::GroupCacheStats, duplicate_members),
};
constexpr Field<routing::MessageIdStats> kMessageIdFields[] = {
    HERALD_FIELD(routing::MessageIdStats, minted), HERALD_FIELD(routing::MessageIdStats, clock_behind), HERALD_FIELD(routing::MessageIdStats, floor_raised), HERALD_FIELD(routing::MessageIdStats, time_saturated),
};
constexpr Field<routing::DirectoryStats> kDirectoryFields[] = {
    HERALD_FIELD(routing::DirectoryStats, logins), HERALD_FIELD(routing::DirectoryStats, replaced), HERALD_FIELD(routing::DirectoryStats, full), HERALD_FIELD(routing::DirectoryStats, logouts), HERALD_FIELD(routing::DirectoryStats, stale_logouts), HERALD_FIELD(routing::DirectoryStats, read_retries),
};
// clang-format on
#undef HERALD_FIELD

// Every uint64 of every struct has a name: a field added to a stats struct without one here
// fails to compile instead of going unmirrored.
// KernelTransportStats' two uint32 sizes (shards, table_slots) are gauges (WorkerGauges).
static_assert(sizeof(KernelTransportStats) ==
              (std::size(kTransportFields) + static_cast<size_t>(CloseReason::kCount)) * 8 +
                  2 * sizeof(uint32_t));
static_assert(sizeof(routing::WorkerRouterStats) == std::size(kRouterFields) * 8);
// The dpdk tables are named by their X-macros; these catch a field added beside them.
static_assert(sizeof(net::tcp::TcpStats) == net::tcp::TcpStats::kCount * 8);
static_assert(sizeof(net::NetStats) ==
              (net::kDropReasonCount + net::kNetCounterCount + 7) / 8 * 64);  // alignas(64)
static_assert(sizeof(dpdk::DpdkTransportStats) ==
              (sizeof(dpdk::DpdkTransportStats::closed) / 8 +
#define HERALD_DPDK_TRANSPORT_ONE(name, doc) 1 +
               HERALD_DPDK_TRANSPORT_COUNTERS(HERALD_DPDK_TRANSPORT_ONE) 0) *
                  8);
#undef HERALD_DPDK_TRANSPORT_ONE
static_assert(sizeof(StoreClientStats) == (std::size(kStoreFields) + kAppendRefusalCount +
                                           (static_cast<size_t>(ipc::AppendStatus::MAX) + 1) +
                                           2 * ipc::kRecordTypeCount + ipc::kEnvelopeErrorCount) *
                                              8);
static_assert(sizeof(MeshEndpointStats) == (std::size(kMeshFields) + 2) * 8);  // + 2 gauges
static_assert(sizeof(routing::DedupStats) == std::size(kDedupFields) * 8);
static_assert(sizeof(routing::DeviceListStats) == std::size(kDeviceListFields) * 8);
static_assert(sizeof(routing::GroupCacheStats) == std::size(kGroupCacheFields) * 8);
static_assert(sizeof(routing::MessageIdStats) == std::size(kMessageIdFields) * 8);
static_assert(sizeof(routing::DirectoryStats) == std::size(kDirectoryFields) * 8);
static_assert(sizeof(DpdkPoolGauges) == 2 * 8);

// AppendRefusal has no name table of its own (kNone is never counted).
static_assert(kAppendRefusalCount == 5, "name the new AppendRefusal below");
constexpr const char* kAppendRefusalNames[kAppendRefusalCount] = {
    "none", "pending_full", "held_full", "too_large", "no_recipients"};

template <typename T>
size_t offset_of(const T& probe, const uint64_t& field) {
  return static_cast<size_t>(reinterpret_cast<const char*>(&field) -
                             reinterpret_cast<const char*>(&probe));
}

// FlatBuffers enum names (AppendRequest, StoreFailed) in the counters' snake_case.
std::string snake_case(std::string_view camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    const char c = camel[i];
    if (std::isupper(static_cast<unsigned char>(c)) != 0) {
      if (i > 0) out.push_back('_');
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

const void* source_of(const WorkerStatsView& v, Source s) {
  switch (s) {
    case Source::kTransport: return v.transport;
    case Source::kTls: return v.tls;
    case Source::kSession: return v.session;
    case Source::kRouter: return v.router;
    case Source::kStore: return v.store;
    case Source::kMesh: return v.mesh;
    case Source::kDedup: return v.dedup;
    case Source::kDeviceLists: return v.device_lists;
    case Source::kGroups: return v.groups;
    case Source::kMessageIds: return v.message_ids;
    case Source::kDirectory: return v.directory;
    case Source::kLoop: return v.loop;
    case Source::kGauges: return v.gauges;
    case Source::kNet: return v.net;
    case Source::kTcp: return v.tcp;
    case Source::kDpdkLoop: return v.dpdk_loop;
    case Source::kDpdkTransport: return v.dpdk_transport;
    case Source::kDpdkPool: return v.dpdk_pool;
    case Source::kProcess: return v.process;
  }
  return nullptr;
}

// How long a layout lock held by another live registrant may stall the worker at attach. A
// registration holds it for microseconds, so running out means a stuck registrant: the attach
// then stops registering (one stall, not one per name).
constexpr uint32_t kLayoutLockTimeoutMs = 250;

}  // namespace

WorkerStatsView collect_worker_stats(const Transport& transport, const TlsLayer& tls,
                                     const SessionLayer& sessions,
                                     const routing::WorkerRouter& router, const StoreClient& store,
                                     const MeshEndpoint& mesh, const WorkerLoopStats& loop,
                                     const routing::Directory* directory,
                                     WorkerStatsScratch& scratch) {
  WorkerGauges& g = scratch.gauges;
  g.sessions = sessions.sessions();
  const auto* kernel = dynamic_cast<const KernelTransport*>(&transport);
  g.transport_connections = transport.connections();
  g.transport_shards = kernel != nullptr ? kernel->stats().shards : 0;
  g.transport_table_slots = kernel != nullptr ? kernel->stats().table_slots : 0;
  g.tls_connections = tls.connections();
  g.router_sessions = router.sessions();
  g.pending_messages = router.pending_messages();
  g.store_pending_appends = store.pending_appends();
  g.store_held_appends = store.held_appends();
  g.store_held_bytes = store.held_bytes();
  g.store_held_records = store.held_records();
  g.store_drains_in_progress = store.drains_in_progress();
  g.device_lists_cached = router.device_lists().cached();
  g.device_list_requests_pending = router.device_lists().pending_requests();
  g.device_list_waiters = router.device_lists().waiters();
  g.groups_cached = router.groups().groups();
  scratch.loop = loop;
  WorkerStatsView v;
  v.transport = kernel != nullptr ? &kernel->stats() : nullptr;
  v.tls = &tls.stats();
  v.session = &sessions.stats();
  v.router = &router.stats();
  v.store = &store.stats();
  v.mesh = &mesh.stats();
  v.dedup = &router.dedup().stats();
  v.device_lists = &router.device_lists().stats();
  v.groups = &router.groups().stats();
  v.message_ids = &router.minter().stats();
  if (directory != nullptr) {
    scratch.directory = directory->stats();
    v.directory = &scratch.directory;
  }
  v.loop = &scratch.loop;
  v.gauges = &scratch.gauges;
  return v;
}

StatsMirror::StatsMirror(StatsMirrorOptions options) : options_(options) {
  add_entries();
}

StatsMirror::~StatsMirror() = default;

void StatsMirror::add(std::string name, Source source, size_t offset_bytes, bool gauge) {
  names_.push_back(std::move(name));
  entries_.push_back({source, static_cast<uint32_t>(offset_bytes), gauge, {}, {}, 0});
}

void StatsMirror::add_entries() {
  // Each table's names, in a fixed order: the struct's fields, then its arrays by enum.
  auto plain = [this]<typename T, size_t N>(const char* prefix, Source source,
                                            const Field<T>(&fields)[N]) {
    static const T probe{};
    for (const Field<T>& f : fields) {
      add(absl::StrCat(prefix, f.name), source, offset_of(probe, probe.*f.member), false);
    }
  };
  {
    static const KernelTransportStats probe{};
    plain("dp.transport.", Source::kTransport, kTransportFields);
    for (size_t i = 0; i < probe.closes.size(); ++i) {
      add(absl::StrCat("dp.transport.close.", close_reason_name(static_cast<CloseReason>(i))),
          Source::kTransport, offset_of(probe, probe.closes[i]), false);
    }
  }
  {
    static const TlsStats probe{};
    for_each_counter(probe, [&](std::string_view section, std::string_view name,
                                const uint64_t& value) {
      add(section.empty() ? absl::StrCat("dp.tls.", std::string(name))
                          : absl::StrCat("dp.tls.", std::string(section), ".", std::string(name)),
          Source::kTls, offset_of(probe, value), false);
    });
  }
  {
    static const SessionStats probe{};
    for_each_counter(
        probe, [&](std::string_view section, std::string_view name, const uint64_t& value) {
          add(section.empty()
                  ? absl::StrCat("dp.session.", std::string(name))
                  : absl::StrCat("dp.session.", std::string(section), ".", std::string(name)),
              Source::kSession, offset_of(probe, value), false);
        });
  }
  plain("dp.router.", Source::kRouter, kRouterFields);
  {
    static const StoreClientStats probe{};
    plain("dp.store.", Source::kStore, kStoreFields);
    for (size_t i = 1; i < kAppendRefusalCount; ++i) {
      add(absl::StrCat("dp.store.append_refused.", kAppendRefusalNames[i]), Source::kStore,
          offset_of(probe, probe.append_refused[i]), false);
    }
    for (size_t i = 0; i < std::size(probe.outcomes); ++i) {
      add(absl::StrCat("dp.store.outcome.",
                       snake_case(ipc::EnumNameAppendStatus(static_cast<ipc::AppendStatus>(i)))),
          Source::kStore, offset_of(probe, probe.outcomes[i]), false);
    }
    // Record::NONE is never counted.
    for (size_t i = 1; i < ipc::kRecordTypeCount; ++i) {
      const std::string type = snake_case(ipc::EnumNameRecord(static_cast<ipc::Record>(i)));
      add(absl::StrCat("dp.store.records_in.", type), Source::kStore,
          offset_of(probe, probe.records_in[i]), false);
      add(absl::StrCat("dp.store.records_out.", type), Source::kStore,
          offset_of(probe, probe.records_out[i]), false);
    }
    for (size_t i = 1; i < ipc::kEnvelopeErrorCount; ++i) {
      add(absl::StrCat("dp.store.bad_record.",
                       ipc::envelope_error_name(static_cast<ipc::EnvelopeError>(i))),
          Source::kStore, offset_of(probe, probe.bad_records[i]), false);
    }
  }
  {
    static const MeshEndpointStats probe{};
    plain("dp.mesh.", Source::kMesh, kMeshFields);
    add("dp.mesh.overflow_records", Source::kMesh, offset_of(probe, probe.overflow_records), true);
    add("dp.mesh.overflow_bytes", Source::kMesh, offset_of(probe, probe.overflow_bytes), true);
  }
  plain("dp.dedup.", Source::kDedup, kDedupFields);
  plain("dp.device_lists.", Source::kDeviceLists, kDeviceListFields);
  plain("dp.groups.", Source::kGroups, kGroupCacheFields);
  plain("dp.message_ids.", Source::kMessageIds, kMessageIdFields);
  if (options_.with_directory) plain("dp.directory.", Source::kDirectory, kDirectoryFields);
  {
    static const WorkerLoopStats probe{};
    add("dp.worker.loop_turns", Source::kLoop, offset_of(probe, probe.loop_turns), false);
    add("dp.worker.sleeps", Source::kLoop, offset_of(probe, probe.sleeps), false);
    add("dp.worker.empty_turns", Source::kLoop, offset_of(probe, probe.empty_turns), false);
  }
  {
    static const WorkerGauges probe{};
#define HERALD_WORKER_GAUGE_ENTRY(field, name) \
  add("dp." name, Source::kGauges, offset_of(probe, probe.field), true);
    HERALD_WORKER_GAUGES(HERALD_WORKER_GAUGE_ENTRY)
#undef HERALD_WORKER_GAUGE_ENTRY
  }
  {
    static const ProcessMemoryGauges probe{};
    add("dp.process.heap_in_use_bytes", Source::kProcess, offset_of(probe, probe.heap_in_use_bytes),
        true);
    add("dp.process.heap_free_bytes", Source::kProcess, offset_of(probe, probe.heap_free_bytes),
        true);
    add("dp.process.rss_bytes", Source::kProcess, offset_of(probe, probe.rss_bytes), true);
    add("dp.process.heap_trims", Source::kProcess, offset_of(probe, probe.heap_trims), false);
    add("dp.process.heap_trim_released_bytes", Source::kProcess,
        offset_of(probe, probe.heap_trim_released_bytes), false);
  }
  if (options_.with_dpdk) {
    // The stack's drop table and counters, the TCP engine's table, the port loop's and the
    // transport's counters: names from their X-macro tables (stable, documented there).
    static const net::NetStats net_probe{};
    for (size_t i = 0; i < net::kDropReasonCount; ++i) {
      if (static_cast<net::DropReason>(i) == net::DropReason::kNone) continue;
      add(absl::StrCat("dp.net.drop.",
                       std::string(net::drop_reason_name(static_cast<net::DropReason>(i)))),
          Source::kNet, offset_of(net_probe, net_probe.drops[i]), false);
    }
    for (size_t i = 0; i < net::kNetCounterCount; ++i) {
      add(absl::StrCat("dp.net.",
                       std::string(net::net_counter_name(static_cast<net::NetCounter>(i)))),
          Source::kNet, offset_of(net_probe, net_probe.counters[i]), false);
    }
    static const net::tcp::TcpStats tcp_probe{};
    for (uint32_t i = 0; i < net::tcp::TcpStats::kCount; ++i) {
      add(absl::StrCat("dp.tcp.",
                       net::tcp::TcpStats::name(static_cast<net::tcp::TcpStats::Index>(i))),
          Source::kTcp, offset_of(tcp_probe, tcp_probe.values[i]),
          net::tcp::TcpStats::is_gauge(static_cast<net::tcp::TcpStats::Index>(i)));
    }
    static const dpdk::LoopStatsSnapshot loop_probe{};
#define HERALD_DPDK_LOOP_ENTRY(name, doc) \
  add("dp.dpdk." #name, Source::kDpdkLoop, offset_of(loop_probe, loop_probe.name), false);
    HERALD_DPDK_LOOP_COUNTERS(HERALD_DPDK_LOOP_ENTRY)
#undef HERALD_DPDK_LOOP_ENTRY
    static const dpdk::DpdkTransportStats transport_probe{};
#define HERALD_DPDK_TRANSPORT_ENTRY(name, doc)            \
  add("dp.dpdk.transport." #name, Source::kDpdkTransport, \
      offset_of(transport_probe, transport_probe.name), false);
    HERALD_DPDK_TRANSPORT_COUNTERS(HERALD_DPDK_TRANSPORT_ENTRY)
#undef HERALD_DPDK_TRANSPORT_ENTRY
    for (size_t i = 0; i < std::size(transport_probe.closed); ++i) {
      add(absl::StrCat("dp.dpdk.transport.close.", close_reason_name(static_cast<CloseReason>(i))),
          Source::kDpdkTransport, offset_of(transport_probe, transport_probe.closed[i]), false);
    }
    static const DpdkPoolGauges pool_probe{};
    add("dp.dpdk.mempool.mbufs_free", Source::kDpdkPool,
        offset_of(pool_probe, pool_probe.mbufs_free), true);
    add("dp.dpdk.mempool.mbufs_in_use", Source::kDpdkPool,
        offset_of(pool_probe, pool_probe.mbufs_in_use), true);
  }
  names_.push_back(kStoreLatencyName);
}

absl::Status StatsMirror::attach(int counters_fd) {
  detach();
  if (counters_fd < 0) {
    ++stats_.attach_failures;
    return absl::FailedPreconditionError("stats mirror: the link carries no counters segment");
  }
  shm::UniqueFd fd(::fcntl(counters_fd, F_DUPFD_CLOEXEC, 0));
  if (!fd) {
    ++stats_.attach_failures;
    return absl::InternalError("stats mirror: cannot duplicate the counters descriptor");
  }
  auto segment = counters::CountersSegment::attach(
      std::move(fd), counters::RegistryOptions{.layout_lock_timeout_ms = kLayoutLockTimeoutMs});
  if (!segment.ok()) {
    ++stats_.attach_failures;
    return segment.status();
  }
  segment_.emplace(std::move(*segment));
  counters::CounterRegistry& registry = segment_->registry();
  auto thread = registry.thread(kFirstWorkerCounterBlock + options_.worker);
  if (!thread.ok()) {
    // The segment was sized for fewer workers than run (max_threads): nothing to write into.
    ++stats_.attach_failures;
    segment_.reset();
    return thread.status();
  }
  thread_.emplace(*thread);
  absl::Status first_error;
  bool lock_stuck = false;
  auto failed = [&](const absl::Status& status) {
    ++stats_.registration_failures;
    if (first_error.ok()) first_error = status;
    lock_stuck = lock_stuck || absl::IsDeadlineExceeded(status);
  };
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    e.counter = {};
    e.gauge_handle = {};
    if (lock_stuck) {
      ++stats_.registration_failures;
      continue;
    }
    if (e.gauge) {
      auto h = registry.gauge(names_[i]);
      if (h.ok()) {
        e.gauge_handle = *h;
      } else {
        failed(h.status());
      }
    } else {
      auto h = registry.counter(names_[i]);
      if (h.ok()) {
        e.counter = *h;
      } else {
        failed(h.status());
      }
    }
  }
  store_latency_ = {};
  if (lock_stuck) {
    ++stats_.registration_failures;
  } else if (auto latency = registry.histogram(kStoreLatencyName, options_.store_latency_spec);
             latency.ok()) {
    store_latency_ = *latency;
  } else {
    failed(latency.status());
  }
  ++stats_.attaches;
  if (!first_error.ok()) {
    // The entries that failed are skipped by publish(); the rest are mirrored.
    HLOG_WARN("dataplane.stats_mirror.registration_failed")
        .kv("worker", uint64_t{options_.worker})
        .kv("failures", stats_.registration_failures)
        .kv("error", first_error.ToString());
  }
  return absl::OkStatus();
}

void StatsMirror::detach() {
  // The baselines stay: what happens from here on goes to the next segment.
  thread_.reset();
  segment_.reset();
}

bool StatsMirror::due(uint64_t now_ns) const {
  return attached() && (stats_.publishes == 0 || now_ns - last_publish_ns_ >= options_.interval_ns);
}

void StatsMirror::publish(uint64_t now_ns, const WorkerStatsView& view) {
  if (!thread_) return;
  for (Entry& e : entries_) {
    const void* base = source_of(view, e.source);
    if (base == nullptr) continue;
    // Not registered in this segment: its delta waits for one that has the name.
    if ((e.gauge ? e.gauge_handle.slot() : e.counter.slot()) < counters::kReservedSlots) continue;
    uint64_t value;
    std::memcpy(&value, static_cast<const char*>(base) + e.offset_bytes, sizeof(value));
    if (e.gauge) {
      thread_->set(e.gauge_handle, static_cast<int64_t>(value));
      continue;
    }
    // A source that went back (a part rebuilt) starts over from zero rather than wrapping.
    const uint64_t delta = value >= e.published ? value - e.published : value;
    if (delta != 0) thread_->add(e.counter, delta);
    e.published = value;
  }
  last_publish_ns_ = now_ns;
  ++stats_.publishes;
}

void StatsMirror::record_store_latency(uint64_t latency_ns) {
  if (thread_) thread_->record(store_latency_, latency_ns);
}

}  // namespace herald::dataplane
