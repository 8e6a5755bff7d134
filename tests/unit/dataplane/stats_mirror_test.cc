// StatsMirror against real counters segments: names registered and stable, counters published as
// deltas and gauges as values, per-worker thread blocks, a second segment after a control-plane
// restart getting only what the first did not, and no segment at all.
#include "dataplane/stats_mirror.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <string>

#include "platform/counters/segment.h"

namespace herald::dataplane {
namespace {

// A worker's stats as plain structs the test writes directly.
struct FakeWorker {
  KernelTransportStats transport;
  TlsStats tls;
  SessionStats session;
  routing::WorkerRouterStats router;
  StoreClientStats store;
  MeshEndpointStats mesh;
  routing::DedupStats dedup;
  routing::DeviceListStats device_lists;
  routing::GroupCacheStats groups;
  routing::MessageIdStats message_ids;
  routing::DirectoryStats directory;
  WorkerLoopStats loop;
  WorkerGauges gauges;

  WorkerStatsView view() const {
    return {&transport,    &tls,    &session,     &router,    &store, &mesh,  &dedup,
            &device_lists, &groups, &message_ids, &directory, &loop,  &gauges};
  }
};

counters::CountersSegment make_segment(counters::Capacity capacity = {.max_entries = 2048,
                                                                      .max_threads = 4,
                                                                      .slots_per_thread = 8192}) {
  auto segment = counters::CountersSegment::create("stats-mirror-test", capacity);
  EXPECT_TRUE(segment.ok()) << segment.status();
  return std::move(*segment);
}

counters::Snapshot read(counters::CountersSegment& segment) {
  auto reader = counters::CounterReader::attach(segment.segment().bytes());
  EXPECT_TRUE(reader.ok()) << reader.status();
  counters::Snapshot snapshot;
  EXPECT_TRUE(reader->read(&snapshot).ok());
  return snapshot;
}

uint64_t counter(const counters::Snapshot& s, std::string_view name) {
  const counters::Metric* m = s.find(name);
  EXPECT_NE(m, nullptr) << name;
  return m == nullptr ? 0 : m->counter;
}

int64_t gauge(const counters::Snapshot& s, std::string_view name) {
  const counters::Metric* m = s.find(name);
  EXPECT_NE(m, nullptr) << name;
  return m == nullptr ? 0 : m->gauge;
}

TEST(StatsMirror, NamesAreUniqueValidAndCoverEveryLayer) {
  StatsMirror mirror({.worker = 0, .with_directory = true});
  std::set<std::string> unique(mirror.names().begin(), mirror.names().end());
  EXPECT_EQ(unique.size(), mirror.names().size());
  for (const std::string& name : mirror.names()) {
    EXPECT_EQ(name.rfind("dp.", 0), 0u) << name;
    EXPECT_LE(name.size(), counters::kMaxNameLength) << name;
    for (char c : name) EXPECT_TRUE(c >= '!' && c <= '~') << name;
  }
  // One name per layer and per array section, as operators and dashboards spell them.
  for (const char* name : {"dp.transport.accepts",
                           "dp.transport.bytes_in",
                           "dp.transport.close.peer_reset",
                           "dp.tls.handshake_ok",
                           "dp.tls.error.handshake",
                           "dp.session.opened",
                           "dp.session.frame_error.too_large",
                           "dp.session.auth_error.expired",
                           "dp.router.server_acks",
                           "dp.router.errors_queue_full",
                           "dp.store.appends",
                           "dp.store.append_refused.held_full",
                           "dp.store.outcome.durable",
                           "dp.store.records_out.store_append",
                           "dp.store.records_in.append_durable",
                           "dp.mesh.sent",
                           "dp.mesh.overflow_records",
                           "dp.dedup.inserted",
                           "dp.device_lists.hits",
                           "dp.groups.applied",
                           "dp.message_ids.minted",
                           "dp.directory.logins",
                           "dp.worker.loop_turns",
                           "dp.worker.sessions",
                           "dp.store.held_bytes",
                           "dp.store.append_latency_ns"}) {
    EXPECT_TRUE(unique.count(name)) << name;
  }
  // Only the worker that mirrors the shared directory has its names.
  StatsMirror other({.worker = 1, .with_directory = false});
  for (const std::string& name : other.names())
    EXPECT_EQ(name.rfind("dp.directory.", 0), std::string::npos);
  EXPECT_EQ(other.names().size() + 6, mirror.names().size());
}

TEST(StatsMirror, NamesAreStableAcrossInstances) {
  StatsMirror a({.worker = 0});
  StatsMirror b({.worker = 3});
  EXPECT_EQ(a.names(), b.names());
}

TEST(StatsMirror, PublishesDeltasAndGaugesIntoItsWorkersBlock) {
  counters::CountersSegment segment = make_segment();
  StatsMirror mirror({.worker = 1, .with_directory = true, .interval_ns = 100});
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  EXPECT_EQ(mirror.stats().registration_failures, 0u);
  FakeWorker w;
  w.transport.bytes_in = 1000;
  w.transport.closes[static_cast<size_t>(CloseReason::kPeerReset)] = 2;
  w.tls.count(TlsEvent::kHandshakeOk);
  w.session.count(SessionEvent::kMessages);
  w.session.frame_errors[static_cast<size_t>(codec::FrameError::kTooLarge)] = 4;
  w.router.server_acks = 7;
  w.store.outcomes[static_cast<size_t>(ipc::AppendStatus::Durable)] = 5;
  w.store.records_out[static_cast<size_t>(ipc::Record::StoreAppend)] = 6;
  w.directory.logins = 3;
  w.gauges.sessions = 11;
  w.gauges.store_held_bytes = 4096;
  w.mesh.overflow_records = 9;
  EXPECT_TRUE(mirror.due(0));
  mirror.publish(0, w.view());
  EXPECT_FALSE(mirror.due(50));
  EXPECT_TRUE(mirror.due(100));

  counters::Snapshot s = read(segment);
  EXPECT_EQ(counter(s, "dp.transport.bytes_in"), 1000u);
  EXPECT_EQ(counter(s, "dp.transport.close.peer_reset"), 2u);
  EXPECT_EQ(counter(s, "dp.tls.handshake_ok"), 1u);
  EXPECT_EQ(counter(s, "dp.session.messages"), 1u);
  EXPECT_EQ(counter(s, "dp.session.frame_error.too_large"), 4u);
  EXPECT_EQ(counter(s, "dp.router.server_acks"), 7u);
  EXPECT_EQ(counter(s, "dp.store.outcome.durable"), 5u);
  EXPECT_EQ(counter(s, "dp.store.records_out.store_append"), 6u);
  EXPECT_EQ(counter(s, "dp.directory.logins"), 3u);
  EXPECT_EQ(gauge(s, "dp.worker.sessions"), 11);
  EXPECT_EQ(gauge(s, "dp.store.held_bytes"), 4096);
  EXPECT_EQ(gauge(s, "dp.mesh.overflow_records"), 9);

  // Only the change since the last publish is added; gauges go down as well as up.
  w.transport.bytes_in = 1500;
  w.gauges.sessions = 3;
  mirror.publish(200, w.view());
  mirror.publish(400, w.view());  // nothing changed: nothing added
  s = read(segment);
  EXPECT_EQ(counter(s, "dp.transport.bytes_in"), 1500u);
  EXPECT_EQ(gauge(s, "dp.worker.sessions"), 3);

  // Store latency as a histogram.
  mirror.record_store_latency(2'000'000);
  mirror.record_store_latency(4'000'000);
  s = read(segment);
  const counters::Metric* latency = s.find(StatsMirror::kStoreLatencyName);
  ASSERT_NE(latency, nullptr);
  EXPECT_EQ(latency->kind, counters::Kind::kHistogram);
  EXPECT_EQ(latency->histogram.count(), 2u);
  EXPECT_EQ(latency->histogram.max(), 4'000'000u);
}

// backend dpdk: the stack's drop table, TCP's table, the port loop's and the transport's
// counters, registered only with with_dpdk.
TEST(StatsMirror, DpdkTablesWhenAsked) {
  StatsMirror plain({.worker = 0});
  for (const std::string& name : plain.names()) {
    EXPECT_FALSE(name.starts_with("dp.net.") || name.starts_with("dp.tcp.") ||
                 name.starts_with("dp.dpdk."))
        << name;
  }
  counters::CountersSegment segment = make_segment();
  StatsMirror mirror({.worker = 0, .with_dpdk = true});
  std::set<std::string> unique(mirror.names().begin(), mirror.names().end());
  EXPECT_EQ(unique.size(), mirror.names().size());
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  EXPECT_EQ(mirror.stats().registration_failures, 0u);
  FakeWorker w;
  net::NetStats net;
  net.add(net::DropReason::kL4BadChecksum);
  net.add(net::NetCounter::kRxDelivered, 5);
  net::tcp::TcpStats tcp;
  tcp[net::tcp::TcpStats::segments_retransmitted] = 3;
  dpdk::LoopStatsSnapshot loop;
  loop.rx_packets = 40;
  dpdk::DpdkTransportStats transport;
  transport.accepted = 2;
  transport.closed[static_cast<size_t>(CloseReason::kPeerReset)] = 1;
  WorkerStatsView v = w.view();
  v.net = &net;
  v.tcp = &tcp;
  v.dpdk_loop = &loop;
  v.dpdk_transport = &transport;
  mirror.publish(0, v);
  counters::Snapshot s = read(segment);
  EXPECT_EQ(counter(s, "dp.net.drop.l4_bad_checksum"), 1u);
  EXPECT_EQ(counter(s, "dp.net.rx_delivered"), 5u);
  EXPECT_EQ(counter(s, "dp.tcp.segments_retransmitted"), 3u);
  EXPECT_EQ(counter(s, "dp.dpdk.rx_packets"), 40u);
  EXPECT_EQ(counter(s, "dp.dpdk.transport.accepted"), 2u);
  EXPECT_EQ(counter(s, "dp.dpdk.transport.close.peer_reset"), 1u);
}

// The levels the soak test watches (TCP blocks, SYN queue, ring bytes, the mbuf pool) are
// gauges: published as values, so they come back down in the segment when they fall.
TEST(StatsMirror, DpdkLevelsAreGaugesThatComeBackDown) {
  counters::CountersSegment segment = make_segment();
  StatsMirror mirror({.worker = 0, .with_dpdk = true});
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  FakeWorker w;
  net::tcp::TcpStats tcp;
  DpdkPoolGauges pool;
  WorkerStatsView v = w.view();
  v.tcp = &tcp;
  v.dpdk_pool = &pool;
  auto publish = [&](uint64_t blocks, uint64_t syn, uint64_t time_wait, uint64_t ring_bytes,
                     uint64_t in_use) {
    tcp[net::tcp::TcpStats::connection_blocks] = blocks;
    tcp[net::tcp::TcpStats::syn_queue_length] = syn;
    tcp[net::tcp::TcpStats::time_wait_blocks] = time_wait;
    tcp[net::tcp::TcpStats::buffer_bytes_in_use] = ring_bytes;
    pool = {.mbufs_free = 4095 - in_use, .mbufs_in_use = in_use};
    mirror.publish(0, v);
    return read(segment);
  };
  counters::Snapshot up = publish(300'000, 96, 40, 1 << 20, 2048);
  EXPECT_EQ(gauge(up, "dp.tcp.connection_blocks"), 300'000);
  EXPECT_EQ(gauge(up, "dp.tcp.syn_queue_length"), 96);
  EXPECT_EQ(gauge(up, "dp.tcp.time_wait_blocks"), 40);
  EXPECT_EQ(gauge(up, "dp.tcp.buffer_bytes_in_use"), 1 << 20);
  EXPECT_EQ(gauge(up, "dp.dpdk.mempool.mbufs_in_use"), 2048);
  EXPECT_EQ(gauge(up, "dp.dpdk.mempool.mbufs_free"), 4095 - 2048);
  counters::Snapshot down = publish(0, 0, 0, 0, 512);
  EXPECT_EQ(gauge(down, "dp.tcp.connection_blocks"), 0);
  EXPECT_EQ(gauge(down, "dp.tcp.syn_queue_length"), 0);
  EXPECT_EQ(gauge(down, "dp.tcp.time_wait_blocks"), 0);
  EXPECT_EQ(gauge(down, "dp.tcp.buffer_bytes_in_use"), 0);
  EXPECT_EQ(gauge(down, "dp.dpdk.mempool.mbufs_in_use"), 512);
  EXPECT_EQ(gauge(down, "dp.dpdk.mempool.mbufs_free"), 4095 - 512);
  // Without the pool's view (workers other than 0) its gauges are left as they were.
  v.dpdk_pool = nullptr;
  counters::Snapshot other = publish(0, 0, 0, 0, 0);
  EXPECT_EQ(gauge(other, "dp.dpdk.mempool.mbufs_in_use"), 512);
}

// The process's memory (worker 0 publishes it, either backend): gauges, down as well as up.
TEST(StatsMirror, ProcessMemoryIsGauges) {
  counters::CountersSegment segment = make_segment();
  StatsMirror mirror({.worker = 0});
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  FakeWorker w;
  ProcessMemoryGauges memory{
      .heap_in_use_bytes = 300u << 20, .heap_free_bytes = 40u << 20, .rss_bytes = 500u << 20};
  WorkerStatsView v = w.view();
  v.process = &memory;
  mirror.publish(0, v);
  counters::Snapshot up = read(segment);
  EXPECT_EQ(gauge(up, "dp.process.heap_in_use_bytes"), 300 << 20);
  EXPECT_EQ(gauge(up, "dp.process.heap_free_bytes"), 40 << 20);
  EXPECT_EQ(gauge(up, "dp.process.rss_bytes"), 500 << 20);
  memory = {.heap_in_use_bytes = 20u << 20, .heap_free_bytes = 320u << 20, .rss_bytes = 480u << 20};
  mirror.publish(0, v);
  counters::Snapshot down = read(segment);
  EXPECT_EQ(gauge(down, "dp.process.heap_in_use_bytes"), 20 << 20);
  EXPECT_EQ(gauge(down, "dp.process.heap_free_bytes"), 320 << 20);
  EXPECT_EQ(gauge(down, "dp.process.rss_bytes"), 480 << 20);
  // The trims are counters: totals in the struct, the segment's value follows them.
  memory.heap_trims = 2;
  memory.heap_trim_released_bytes = 300u << 20;
  mirror.publish(0, v);
  counters::Snapshot trimmed = read(segment);
  EXPECT_EQ(counter(trimmed, "dp.process.heap_trims"), 2u);
  EXPECT_EQ(counter(trimmed, "dp.process.heap_trim_released_bytes"), 300u << 20);
}

TEST(StatsMirror, WorkersWriteTheirOwnBlocksAndReadersSumThem) {
  counters::CountersSegment segment = make_segment();
  // The control plane's own thread block 0 is left alone.
  auto cp_thread = segment.registry().thread(0);
  ASSERT_TRUE(cp_thread.ok());
  StatsMirror w0({.worker = 0, .with_directory = true});
  StatsMirror w1({.worker = 1});
  ASSERT_TRUE(w0.attach(segment.fd()).ok());
  ASSERT_TRUE(w1.attach(segment.fd()).ok());
  FakeWorker a, b;
  a.router.messages = 10;
  b.router.messages = 32;
  a.gauges.sessions = 5;
  b.gauges.sessions = 6;
  w0.publish(0, a.view());
  w1.publish(0, b.view());
  counters::Snapshot s = read(segment);
  EXPECT_EQ(counter(s, "dp.router.messages"), 42u);
  EXPECT_EQ(gauge(s, "dp.worker.sessions"), 11);
  EXPECT_EQ(s.threads, 1 + kFirstWorkerCounterBlock + 1);
}

TEST(StatsMirror, ReattachToANewSegmentCountsEachEventOnce) {
  counters::CountersSegment first = make_segment();
  StatsMirror mirror({.worker = 0});
  FakeWorker w;
  ASSERT_TRUE(mirror.attach(first.fd()).ok());
  w.session.count(SessionEvent::kOpened);
  w.session.count(SessionEvent::kOpened);
  w.gauges.sessions = 2;
  mirror.publish(0, w.view());
  // The control plane dies: the link goes, events keep happening meanwhile.
  mirror.detach();
  EXPECT_FALSE(mirror.attached());
  EXPECT_FALSE(mirror.due(1'000'000'000));
  w.session.count(SessionEvent::kOpened);
  mirror.publish(1, w.view());  // detached: a no-op, the delta waits
  // A new control plane, a new segment (already holding its own names first).
  counters::CountersSegment second = make_segment();
  ASSERT_TRUE(second.registry().counter("controlplane.something").ok());
  ASSERT_TRUE(mirror.attach(second.fd()).ok());
  w.session.count(SessionEvent::kOpened);
  mirror.publish(2, w.view());
  EXPECT_EQ(counter(read(first), "dp.session.opened"), 2u);
  EXPECT_EQ(counter(read(second), "dp.session.opened"), 2u);  // 4 in all, each once
  EXPECT_EQ(gauge(read(second), "dp.worker.sessions"), 2);
  // The same name list in both.
  auto names_of = [](const counters::Snapshot& s) {
    std::vector<std::string> out;
    for (const auto& m : s.metrics) {
      if (m.name.rfind("dp.", 0) == 0) out.push_back(m.name);
    }
    return out;
  };
  EXPECT_EQ(names_of(read(first)), names_of(read(second)));
  EXPECT_EQ(names_of(read(second)), mirror.names());

  // Attaching to the same segment again (the link was remade) continues it, no double count.
  ASSERT_TRUE(mirror.attach(second.fd()).ok());
  w.session.count(SessionEvent::kOpened);
  mirror.publish(3, w.view());
  EXPECT_EQ(counter(read(second), "dp.session.opened"), 3u);
  EXPECT_EQ(mirror.stats().attaches, 3u);
}

TEST(StatsMirror, ANewDataplaneProcessContinuesTheSegmentsTotals) {
  counters::CountersSegment segment = make_segment();
  FakeWorker w;
  w.router.appends = 5;
  {
    StatsMirror before({.worker = 0});
    ASSERT_TRUE(before.attach(segment.fd()).ok());
    before.publish(0, w.view());
  }
  // The dataplane restarted: its stats start from zero, the segment keeps the old total.
  FakeWorker restarted;
  restarted.router.appends = 2;
  StatsMirror after({.worker = 0});
  ASSERT_TRUE(after.attach(segment.fd()).ok());
  after.publish(0, restarted.view());
  EXPECT_EQ(counter(read(segment), "dp.router.appends"), 7u);
}

TEST(StatsMirror, NoSegmentMirrorsNothingAndBreaksNothing) {
  StatsMirror mirror({.worker = 0});
  FakeWorker w;
  EXPECT_FALSE(mirror.attach(-1).ok());
  EXPECT_FALSE(mirror.attached());
  EXPECT_FALSE(mirror.due(0));
  mirror.publish(0, w.view());
  mirror.record_store_latency(5);
  EXPECT_EQ(mirror.stats().publishes, 0u);
  EXPECT_EQ(mirror.stats().attach_failures, 1u);
  // A view without some parts (null) skips them.
  counters::CountersSegment segment = make_segment();
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  WorkerStatsView partial;
  partial.router = &w.router;
  w.router.messages = 1;
  mirror.publish(0, partial);
  EXPECT_EQ(counter(read(segment), "dp.router.messages"), 1u);
}

TEST(StatsMirror, TooFewThreadBlocksLeavesTheWorkerDetached) {
  // Sized for one worker; a second one (block 2) has no block.
  counters::CountersSegment segment =
      make_segment({.max_entries = 2048, .max_threads = 2, .slots_per_thread = 8192});
  StatsMirror w1({.worker = 1});
  EXPECT_FALSE(w1.attach(segment.fd()).ok());
  EXPECT_FALSE(w1.attached());
  StatsMirror w0({.worker = 0});
  EXPECT_TRUE(w0.attach(segment.fd()).ok());
}

TEST(StatsMirror, AFullDirectoryLeavesTheRestOnTheDiscardLine) {
  // Room for a few names only: the rest fail, the mirror still publishes what it has.
  counters::CountersSegment segment =
      make_segment({.max_entries = 10, .max_threads = 4, .slots_per_thread = 8192});
  StatsMirror mirror({.worker = 0});
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  EXPECT_EQ(mirror.stats().registration_failures, mirror.names().size() - 10);
  FakeWorker w;
  w.transport.accepts = 3;  // the first name registered
  w.router.messages = 4;    // not registered: kept for a segment that has room
  mirror.publish(0, w.view());
  EXPECT_EQ(counter(read(segment), "dp.transport.accepts"), 3u);
  EXPECT_EQ(read(segment).find("dp.router.messages"), nullptr);
  counters::CountersSegment roomy = make_segment();
  ASSERT_TRUE(mirror.attach(roomy.fd()).ok());
  mirror.publish(1, w.view());
  EXPECT_EQ(counter(read(roomy), "dp.router.messages"), 4u);
  EXPECT_EQ(counter(read(roomy), "dp.transport.accepts"), 0u);  // already given to the first
}

TEST(StatsMirror, AStuckLayoutLockCostsOneWaitNotOnePerName) {
  counters::CountersSegment segment = make_segment();
  // Another live process (our parent) holds the layout lock and never lets go.
  auto* header = reinterpret_cast<counters::layout::Header*>(segment.segment().bytes().data());
  __atomic_store_n(&header->in_progress, static_cast<uint64_t>(::getppid()), __ATOMIC_RELEASE);
  StatsMirror mirror({.worker = 0});
  // One timeout, then the rest are skipped (a wait per name would outlast the test's timeout).
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  EXPECT_EQ(mirror.stats().registration_failures, mirror.names().size());
  FakeWorker w;
  w.router.messages = 1;
  mirror.publish(0, w.view());  // nothing is registered: the delta waits
  __atomic_store_n(&header->in_progress, uint64_t{0}, __ATOMIC_RELEASE);
  // The next link registers everything.
  ASSERT_TRUE(mirror.attach(segment.fd()).ok());
  EXPECT_EQ(mirror.stats().registration_failures, mirror.names().size());
  mirror.publish(1, w.view());
  EXPECT_EQ(counter(read(segment), "dp.router.messages"), 1u);
}

}  // namespace
}  // namespace herald::dataplane
