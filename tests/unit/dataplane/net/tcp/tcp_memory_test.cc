// Memory per idle TCP connection: two engines wired back to back open 10,000 connections,
// exchange a message on each and go idle. Asserts that no idle connection holds a ring or a
// range list; prints the bytes per connection by part and the heap growth (mallinfo2).
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <vector>

#include "dataplane/net/tcp/tcp.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace herald::net::tcp {
namespace {

struct Packet {
  int to;
  IpAddr src, dst;
  std::vector<uint8_t> bytes;
};

class Pair;

class Side : public TcpEvents, public TcpOutput {
 public:
  Side(Pair& pair, int index) : pair_(pair), index_(index) {}
  bool send_segment(const IpAddr& src, const IpAddr& dst,
                    std::span<const uint8_t> segment) override;
  void on_accepted(ConnectionId id, const FourTuple&) override { accepted_.push_back(id); }
  void on_connected(ConnectionId) override { ++connected_; }
  void on_data(ConnectionId, std::span<const uint8_t> b) override { received_ += b.size(); }
  void on_peer_closed(ConnectionId) override {}
  void on_writable(ConnectionId) override {}
  void on_closed(ConnectionId, TcpCloseReason) override { ++closed_; }

  Pair& pair_;
  int index_;
  std::vector<ConnectionId> accepted_;
  uint64_t connected_ = 0, received_ = 0, closed_ = 0;
};

class Pair {
 public:
  explicit Pair(const TcpConfig& config, uint32_t timers)
      : wheel_{timer::TimerWheel({.capacity = timers, .start_ns = clock_.now_ns()}),
               timer::TimerWheel({.capacity = timers, .start_ns = clock_.now_ns()})},
        side_{Side(*this, 0), Side(*this, 1)} {
    for (int i = 0; i < 2; ++i) {
      engine_[i] = std::make_unique<TcpEngine>(config, clock::Clock::fake(&clock_), wheel_[i],
                                               side_[i], side_[i]);
    }
  }
  void pump() {
    while (!queue_.empty()) {
      Packet p = std::move(queue_.front());
      queue_.pop_front();
      engine_[p.to]->input(p.dst, p.src, p.bytes, false);
    }
    engine_[0]->poll();
    engine_[1]->poll();
  }
  void advance_ms(uint64_t ms) {
    for (uint64_t i = 0; i < ms; ++i) {
      clock_.advance_ns(1'000'000);
      for (auto& w : wheel_) (void)w.advance(clock_.now_ns());
      pump();
    }
  }

  clock::FakeClock clock_{1'000'000'000};
  timer::TimerWheel wheel_[2];
  Side side_[2];
  std::unique_ptr<TcpEngine> engine_[2];
  std::deque<Packet> queue_;
};

// Bytes malloc handed out: small chunks plus the ones it mmapped (buffers of 128 KiB and up).
uint64_t heap_bytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

bool Side::send_segment(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> segment) {
  // Delivered as (local, remote) from the receiver's view: dst is its local address.
  pair_.queue_.push_back(Packet{1 - index_, dst, src, {segment.begin(), segment.end()}});
  return true;
}

TEST(TcpMemory, IdleConnectionBytes) {
  constexpr uint32_t kConnections = 10'000;
  TcpConfig config;
  config.max_connections = kConnections + 16;
  const IpAddr server = IpAddr::v4(0x0a000001), client = IpAddr::v4(0x0a000002);
  const uint64_t heap0 = heap_bytes();
  Pair pair(config, kConnections + 16);
  std::vector<ConnectionId> ids;
  ids.reserve(kConnections);
  pair.side_[0].accepted_.reserve(kConnections);
  ASSERT_TRUE(pair.engine_[0]->listen(server, 443));
  const uint64_t heap1 = heap_bytes();
  const uint8_t hello[100] = {1};
  for (uint32_t i = 0; i < kConnections; ++i) {
    ids.push_back(pair.engine_[1]->connect(client, 0, server, 443));
    ASSERT_NE(ids.back(), kNoConnection);
    pair.pump();
    ASSERT_EQ(pair.engine_[1]->send(ids.back(), hello), SendResult::kOk);
    ASSERT_EQ(pair.engine_[0]->send(pair.side_[0].accepted_.back(), hello), SendResult::kOk);
    pair.pump();
  }
  pair.advance_ms(300);  // delayed ACKs out: nothing in flight anywhere
  const uint64_t heap2 = heap_bytes();
  ASSERT_EQ(pair.side_[0].accepted_.size(), kConnections);
  ASSERT_EQ(pair.side_[1].connected_, kConnections);
  ASSERT_EQ(pair.side_[0].received_, 100u * kConnections);
  ASSERT_EQ(pair.side_[1].received_, 100u * kConnections);
  // Behaviour: an idle established connection holds no ring and no range list.
  for (int e = 0; e < 2; ++e) {
    const std::vector<ConnectionId>& list = e == 0 ? pair.side_[0].accepted_ : ids;
    for (ConnectionId id : list) {
      ConnectionInfo info;
      ASSERT_TRUE(pair.engine_[e]->info(id, &info));
      ASSERT_EQ(info.state, TcpState::kEstablished);
      ASSERT_EQ(info.send_buffer_bytes, 0u);
      ASSERT_EQ(info.recv_buffer_bytes, 0u);
    }
    const TcpMemory m = pair.engine_[e]->memory();
    EXPECT_EQ(m.buffers_bytes, 0u);
    EXPECT_EQ(m.ranges_bytes, 0u);
    EXPECT_EQ(pair.engine_[e]->stats()[TcpStats::buffer_bytes_in_use], 0u);
    // Each ring was held while its message waited, so the pool saw at least one 2 KiB class.
    EXPECT_GE(pair.engine_[e]->stats()[TcpStats::buffer_bytes_high_water],
              BufferPool::kMinClassBytes);
  }
  // The figures (one engine's side of a connection; both engines hold kConnections each).
  const TcpMemory m = pair.engine_[0]->memory();
  const double n = kConnections;
  std::printf("idle established TCP connection, bytes each (one end, %u connections):\n",
              kConnections);
  std::printf("  connection block (sizeof)      %6zu\n", TcpEngine::connection_block_bytes());
  std::printf("  blocks as allocated (chunks)   %8.1f\n", m.blocks_bytes / n);
  std::printf("  table + chunk index            %8.1f\n", m.table_bytes / n);
  std::printf("  timer (wheel pool node)        %6u\n", 32u);  // timer_wheel.h: 32 B each
  std::printf("  send + receive rings           %8.1f\n", m.buffers_bytes / n);
  std::printf("  ooo + SACK range lists         %8.1f\n", m.ranges_bytes / n);
  // The pools keep up to buffer_cache_bytes of freed rings each: engine memory, not the
  // connections'; taken out of the per-connection figure and shown apart.
  const uint64_t cached = m.buffers_cached_bytes + pair.engine_[1]->memory().buffers_cached_bytes;
  std::printf("  heap growth (mallinfo2) / conn %8.1f  (less the pools' ring caches, %llu B)\n",
              static_cast<double>(heap2 - heap1 - cached) / (2 * n),
              static_cast<unsigned long long>(cached));
  std::printf("  engine before any connection   %8.1f  (table sized for max_connections)\n",
              static_cast<double>(heap1 - heap0) / 2);
}

// Memory per connection in TIME-WAIT: 10,000 connections closed by engine 0 first, so all of
// them wait there as TIME-WAIT entries; before the table each kept its whole block, its wheel
// timer and its share of the block table (the idle figures above).
TEST(TcpMemory, TimeWaitEntryBytes) {
  constexpr uint32_t kConnections = 10'000;
  TcpConfig config;
  config.max_connections = kConnections + 16;
  config.max_time_wait = kConnections;
  const IpAddr server = IpAddr::v4(0x0a000001), client = IpAddr::v4(0x0a000002);
  Pair pair(config, kConnections + 16 + 1);  // + the TIME-WAIT table's one timer
  std::vector<ConnectionId> ids;
  ids.reserve(kConnections);
  pair.side_[0].accepted_.reserve(kConnections);
  ASSERT_TRUE(pair.engine_[0]->listen(server, 443));
  for (uint32_t i = 0; i < kConnections; ++i) {
    ids.push_back(pair.engine_[1]->connect(client, 0, server, 443));
    ASSERT_NE(ids.back(), kNoConnection);
    pair.pump();
  }
  ASSERT_EQ(pair.side_[0].accepted_.size(), kConnections);
  const uint64_t heap1 = heap_bytes();
  const TcpMemory before = pair.engine_[0]->memory();
  for (ConnectionId id : pair.side_[0].accepted_) pair.engine_[0]->close(id, CloseMode::kGraceful);
  pair.pump();
  for (ConnectionId id : ids) pair.engine_[1]->close(id, CloseMode::kGraceful);
  pair.pump();
  const uint64_t heap2 = heap_bytes();
  TcpEngine& tw = *pair.engine_[0];
  ASSERT_EQ(tw.time_wait_entries(), kConnections);
  ASSERT_EQ(tw.stats()[TcpStats::time_wait_entries], kConnections);
  ASSERT_EQ(tw.stats()[TcpStats::time_wait_overflow], 0u);
  ASSERT_EQ(tw.connections(), 0u) << "no block left in TIME-WAIT";
  ASSERT_EQ(pair.engine_[1]->connections(), 0u);
  const TcpMemory m = tw.memory();
  const double n = kConnections;
  const double after = static_cast<double>(m.time_wait_bytes) / n;
  std::printf("TCP connection in TIME-WAIT, bytes each (%u entries, max_time_wait %u):\n",
              kConnections, config.max_time_wait);
  std::printf(" before: a block   sizeof %zu + timer 32 + table share %.1f = %.1f\n",
              TcpEngine::connection_block_bytes(), before.table_bytes / n,
              TcpEngine::connection_block_bytes() + 32 + before.table_bytes / n);
  std::printf(" after:  an entry  sizeof %zu; entries as allocated (chunks) + buckets = %.1f\n",
              TcpEngine::time_wait_entry_bytes(), after);
  std::printf(
      "         heap growth (mallinfo2) / entry %.1f (the buckets were allocated at start)\n",
      static_cast<double>(heap2 - heap1) / n);
  EXPECT_LE(after, 64.0) << "a TIME-WAIT entry with its share of the table";
  // And they all end 2*MSL later, with the table's one timer.
  pair.advance_ms(2 * config.msl_ms + 1);
  EXPECT_EQ(tw.time_wait_entries(), 0u);
  EXPECT_EQ(tw.stats()[TcpStats::time_wait_expired], kConnections);
}

// After a mass departure the emptied block chunks go back to the allocator: the survivors sit
// in their chunks, the next connections fill the lowest free slots first, and an id of a block
// that lived in a released chunk never finds the block made there later.
TEST(TcpMemory, EmptiedChunksAreGivenBack) {
  constexpr uint32_t kConnections = 6'400;  // 100 chunks of 64
  constexpr uint32_t kSurvivorEvery = 1'000;
  constexpr uint64_t kBlocksPerChunk = 64;  // tcp.h's kChunkSlots
  TcpConfig config;
  config.max_connections = kConnections + 16;
  const IpAddr server = IpAddr::v4(0x0a000001), client = IpAddr::v4(0x0a000002);
  Pair pair(config, kConnections + 16);
  ASSERT_TRUE(pair.engine_[0]->listen(server, 443));
  TcpEngine& engine = *pair.engine_[1];  // the client side: its ids are ours to keep
  const uint64_t block_chunk = kBlocksPerChunk * TcpEngine::connection_block_bytes();
  auto open_all = [&](std::vector<ConnectionId>* ids) {
    for (uint32_t i = 0; i < kConnections; ++i) {
      ids->push_back(engine.connect(client, 0, server, 443));
      ASSERT_NE(ids->back(), kNoConnection);
      pair.pump();
    }
  };
  std::vector<ConnectionId> first;
  open_all(&first);
  ASSERT_EQ(engine.connections(), kConnections);
  EXPECT_EQ(engine.memory().blocks_bytes, kConnections / 64 * block_chunk);
  EXPECT_EQ(engine.stats()[TcpStats::block_bytes_held], engine.memory().blocks_bytes);

  // Everyone but every thousandth connection leaves (resets: no TIME-WAIT on either side).
  std::vector<ConnectionId> survivors;
  for (uint32_t i = 0; i < kConnections; ++i) {
    if (i % kSurvivorEvery == 0) {
      survivors.push_back(first[i]);
    } else {
      engine.close(first[i], CloseMode::kAbort);
    }
  }
  pair.pump();
  ASSERT_EQ(engine.connections(), survivors.size());
  ASSERT_EQ(pair.engine_[0]->connections(), survivors.size());
  // Held: the chunks holding a survivor (7 here, one each) and the one spare.
  const uint64_t survivor_chunks = survivors.size();
  EXPECT_EQ(engine.memory().blocks_bytes, (survivor_chunks + 1) * block_chunk);
  EXPECT_EQ(engine.stats()[TcpStats::block_bytes_held], (survivor_chunks + 1) * block_chunk);
  EXPECT_EQ(pair.engine_[0]->memory().blocks_bytes, (survivor_chunks + 1) * block_chunk);
  for (uint32_t i = 0; i < kConnections; ++i) {
    ConnectionInfo info;
    EXPECT_EQ(engine.info(first[i], &info), i % kSurvivorEvery == 0) << i;
  }

  // The next round fills the holes from the lowest chunk up and grows back to what it needs.
  std::vector<ConnectionId> second;
  second.reserve(kConnections);
  open_all(&second);
  ASSERT_EQ(engine.connections(), kConnections + survivors.size());
  EXPECT_EQ(engine.memory().blocks_bytes,
            (kConnections + survivors.size() + 63) / 64 * block_chunk);
  // Old ids never reach the new blocks made in the same slots (generations carried over).
  for (uint32_t i = 0; i < kConnections; ++i) {
    ConnectionInfo info;
    EXPECT_EQ(engine.info(first[i], &info), i % kSurvivorEvery == 0) << i;
    ASSERT_TRUE(engine.info(second[i], &info)) << i;
    EXPECT_EQ(info.state, TcpState::kEstablished);
  }
  // The survivors still carry data both ways.
  const uint8_t hello[100] = {7};
  const uint64_t received = pair.side_[0].received_;
  for (ConnectionId id : survivors) ASSERT_EQ(engine.send(id, hello), SendResult::kOk);
  pair.pump();
  EXPECT_EQ(pair.side_[0].received_, received + 100 * survivors.size());

  // All gone: one spare chunk stays, nothing else.
  for (ConnectionId id : survivors) engine.close(id, CloseMode::kAbort);
  for (ConnectionId id : second) engine.close(id, CloseMode::kAbort);
  pair.pump();
  EXPECT_EQ(engine.connections(), 0u);
  EXPECT_EQ(engine.memory().blocks_bytes, block_chunk);
  EXPECT_EQ(pair.engine_[0]->connections(), 0u);
  EXPECT_EQ(pair.engine_[0]->memory().blocks_bytes, block_chunk);
}

// Random opens and resets against a model: every id the engine ever handed out is found while
// its connection lives and never after (however often its chunk was released and made again),
// and the chunks held are exactly those with a live block, plus at most the one spare.
TEST(TcpMemory, ChunkReleaseAgainstAModel) {
  constexpr uint32_t kMaxConnections = 700;  // 11 chunks, the last one partial
  constexpr uint64_t kBlocksPerChunk = 64;   // tcp.h's kChunkSlots
  TcpConfig config;
  config.max_connections = kMaxConnections;
  const IpAddr server = IpAddr::v4(0x0a000001), client = IpAddr::v4(0x0a000002);
  Pair pair(config, kMaxConnections + 16);
  ASSERT_TRUE(pair.engine_[0]->listen(server, 443));
  TcpEngine& engine = *pair.engine_[1];
  const uint64_t block_chunk = kBlocksPerChunk * TcpEngine::connection_block_bytes();
  std::vector<ConnectionId> live, ended;
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  auto next = [&seed](uint64_t n) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;  // xorshift64
    return seed % n;
  };
  for (int step = 0; step < 6'000; ++step) {
    // Phases that fill towards the limit and drain towards zero, so chunks empty and refill.
    const bool filling = (step / 1'000) % 2 == 0;
    const bool open =
        live.empty() || (live.size() < kMaxConnections && next(100) < (filling ? 75u : 25u));
    if (open) {
      const ConnectionId id = engine.connect(client, 0, server, 443);
      ASSERT_NE(id, kNoConnection) << step;
      live.push_back(id);
    } else {
      const size_t i = next(live.size());
      engine.close(live[i], CloseMode::kAbort);
      ended.push_back(live[i]);
      live[i] = live.back();
      live.pop_back();
    }
    pair.pump();
    if (step % 97 != 0) continue;
    ASSERT_EQ(engine.connections(), live.size()) << step;
    ConnectionInfo info;
    for (ConnectionId id : live) ASSERT_TRUE(engine.info(id, &info)) << step;
    for (ConnectionId id : ended) ASSERT_FALSE(engine.info(id, &info)) << step;
    // A chunk is held while any block of it lives: at least the chunks the live blocks need,
    // at most one per live block (and no more than the limit needs), plus the spare.
    const uint64_t held = engine.memory().blocks_bytes / block_chunk;
    EXPECT_GE(held, (live.size() + kBlocksPerChunk - 1) / kBlocksPerChunk) << step;
    EXPECT_LE(held, std::min<uint64_t>(live.size(), (kMaxConnections + 63) / 64) + 1) << step;
    EXPECT_EQ(engine.stats()[TcpStats::block_bytes_held], held * block_chunk) << step;
  }
  for (ConnectionId id : live) engine.close(id, CloseMode::kAbort);
  pair.pump();
  EXPECT_EQ(engine.memory().blocks_bytes, block_chunk) << "only the spare";
  // Every id ever given out is dead now, and never matched a later connection.
  ConnectionInfo info;
  for (ConnectionId id : ended) EXPECT_FALSE(engine.info(id, &info));
}

}  // namespace
}  // namespace herald::net::tcp
