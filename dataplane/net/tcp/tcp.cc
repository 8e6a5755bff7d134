// The TCP engine (see tcp.h): connection blocks, demux, RFC 9293 3.10 segment arrival,
// output, timers, congestion control and event delivery.
#include "dataplane/net/tcp/tcp.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "dataplane/net/tcp/range_list.h"
#include "dataplane/net/tcp/siphash.h"
#include "platform/assert/assert.h"

namespace herald::net::tcp {
namespace {

constexpr uint32_t kDefaultPeerMss = 536;  // RFC 9293 3.7.1 when the SYN has no MSS option
constexpr uint32_t kTimestampOptionBytes = 12;

enum class SackBlockKind : uint8_t { kInvalid, kOld, kUsable };

// What the segment's SACK block i tells a sender with SND.UNA..SND.MAX outstanding: empty,
// straddling SND.UNA or covering unsent data (invalid), a D-SACK or simply old (RFC 2883), or
// news for the scoreboard.
SackBlockKind classify_sack_block(const Segment& seg, uint8_t i, uint32_t snd_una,
                                  uint32_t snd_max) {
  const uint32_t left = seg.options.sack[i].left, right = seg.options.sack[i].right;
  if (!seq_lt(left, right)) return SackBlockKind::kInvalid;
  // The third test is RFC 2883 5's other D-SACK: a first block inside the second (plain SACK
  // blocks never overlap). It reports a duplicate, not newly received data.
  if (seq_le(right, snd_una) || seq_le(right, seg.ack) ||
      (i == 0 && seg.options.sack_count > 1 && seq_ge(left, seg.options.sack[1].left) &&
       seq_le(right, seg.options.sack[1].right))) {
    return SackBlockKind::kOld;
  }
  if (seq_lt(left, snd_una) || seq_gt(right, snd_max)) return SackBlockKind::kInvalid;
  return SackBlockKind::kUsable;
}

}  // namespace

const char* tcp_state_name(TcpState state) {
  switch (state) {
#define HERALD_TCP_STATE_CASE(name, text) \
  case TcpState::name: return text;
    HERALD_TCP_STATES(HERALD_TCP_STATE_CASE)
#undef HERALD_TCP_STATE_CASE
  }
  return "?";
}

const char* tcp_close_reason_name(TcpCloseReason reason) {
  switch (reason) {
#define HERALD_TCP_CLOSE_CASE(name, text, doc) \
  case TcpCloseReason::name: return text;
    HERALD_TCP_CLOSE_REASONS(HERALD_TCP_CLOSE_CASE)
#undef HERALD_TCP_CLOSE_CASE
    case TcpCloseReason::kCount: break;
  }
  return "?";
}

dataplane::CloseReason to_transport_reason(TcpCloseReason reason) {
  using dataplane::CloseReason;
  switch (reason) {
    case TcpCloseReason::kNormal: return CloseReason::kPeerClosed;
    case TcpCloseReason::kPeerReset: return CloseReason::kPeerReset;
    case TcpCloseReason::kLocalAbort: return CloseReason::kLocalClose;
    case TcpCloseReason::kSendQueueFull: return CloseReason::kSendQueueFull;
    case TcpCloseReason::kShutdown: return CloseReason::kShutdown;
    default: return CloseReason::kIoError;
  }
}

const char* TcpStats::name(Index i) {
  static const char* const kNames[] = {
#define HERALD_TCP_STAT_NAME(name, doc) #name,
      HERALD_TCP_STATS(HERALD_TCP_STAT_NAME)
#undef HERALD_TCP_STAT_NAME
  };
  return i < kCount ? kNames[i] : "?";
}

const char* TcpStats::doc(Index i) {
  static const char* const kDocs[] = {
#define HERALD_TCP_STAT_DOC(name, doc) doc,
      HERALD_TCP_STATS(HERALD_TCP_STAT_DOC)
#undef HERALD_TCP_STAT_DOC
  };
  return i < kCount ? kDocs[i] : "?";
}

struct TcpEngine::Listener {
  IpAddr addr;
  bool any = false;
  uint16_t port = 0;
  uint32_t syn_count = 0;
  bool accepting = true;
  std::vector<ConnectionId> backlog;  // established, waiting for set_accepting(true)
};

// A connection block. Fields are ordered by alignment (8, 4, then 1 byte and flags) so the
// block has no padding holes; the flags are bits; the id is derived from slot and generation;
// rings and range lists are held only while they hold something (sizeof: connection_block_bytes).
struct TcpEngine::Connection {
  TcpEngine* engine = nullptr;
  Listener* listener = nullptr;  // passive opens: until accepted
  // Send buffer: a ring of sbuf_cap bytes holding [sbuf_seq, sbuf_seq + sbuf_len), unacked then
  // unsent; null while empty (the configured send_buffer_bytes is the limit, not the size).
  uint8_t* sbuf = nullptr;
  // Receive side: a ring of in-order undelivered bytes followed by room for out-of-order data
  // within the window, written in place; `ooo` lists the held [start, end) ranges in order.
  // Null while empty: the window is computed from recv_buffer_bytes, not from the ring.
  uint8_t* rbuf = nullptr;
  RangeList ooo;
  // SACK (RFC 2018 / 6675). Sender: `scoreboard` holds the SACKed [start, end) ranges above
  // SND.UNA in order (at most sack_scoreboard_ranges); `high_rxt` is RFC 6675's HighRxt.
  // Receiver: `sack_recent` remembers the most recently received out-of-order sequence numbers
  // so the first block reported is the newest (RFC 2018 4).
  RangeList scoreboard;
  // Timers: one wheel timer per connection, armed for the earliest of these (0 = off).
  uint64_t rto_at_ns = 0, delack_at_ns = 0, keepalive_at_ns = 0, timewait_at_ns = 0;
  uint64_t finwait2_at_ns = 0;
  // Congestion control (RFC 5681, 6582; CUBIC's state when config_.congestion_control is it).
  CubicState cubic;

  // RTT (RFC 6298): microseconds (a sample is below 600 s), the RTO in ms.
  uint32_t srtt_us = 0, rttvar_us = 0, rto_ms = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  timer::TimerId timer = timer::kInvalidTimerId;
  // Send side (RFC 9293 3.3.1), snd_max the highest sequence number sent (after go-back-N
  // snd_nxt falls behind it).
  uint32_t iss = 0, snd_una = 0, snd_nxt = 0, snd_max = 0, snd_wnd = 0, snd_wl1 = 0, snd_wl2 = 0;
  uint32_t max_snd_wnd = 0;
  uint32_t peer_mss = kDefaultPeerMss;
  uint32_t eff_mss = kDefaultPeerMss;
  uint32_t ts_recent = 0;
  uint32_t ts_offset = 0;
  uint32_t last_ack_sent = 0;
  uint32_t sbuf_cap = 0, sbuf_head = 0, sbuf_len = 0, sbuf_seq = 0;
  uint32_t fin_seq = 0;
  uint32_t cwnd = 0, ssthresh = UINT32_MAX, recover = 0, dupacks = 0;
  uint32_t high_rxt = 0;
  uint32_t sack_recent[kMaxSackBlocks] = {};
  // RFC 2883: the duplicate range the next ACK reports as its first block, once.
  uint32_t dsack_left = 0, dsack_right = 0;
  uint32_t backoff = 0;
  uint32_t timed_seq = 0;
  uint32_t timed_at_ms = 0;
  uint32_t retransmits = 0;
  uint32_t keepalive_sent = 0;
  uint32_t irs = 0, rcv_nxt = 0;
  uint32_t rbuf_cap = 0, rbuf_head = 0, rbuf_ready = 0;
  uint32_t fin_pending_seq = 0;  // FIN seen out of order here (fin_pending)
  uint32_t unacked_segments = 0;
  uint32_t last_adv_wnd = 0;

  FourTuple tuple;
  TcpState state = TcpState::kClosed;
  uint8_t snd_wscale = 0, rcv_wscale = 0;
  uint8_t sack_recent_count = 0;
  bool live : 1 = false;
  bool passive : 1 = false;
  bool in_syn_queue : 1 = false;
  bool in_backlog : 1 = false;
  bool app_open : 1 = false;  // the application holds `id`
  bool reading : 1 = true;
  bool ts_ok : 1 = false;
  bool fin_queued : 1 = false;
  bool above_low_water : 1 = false;
  bool in_recovery : 1 = false;
  bool sack_ok : 1 = false;
  bool sack_seen : 1 = false;  // a valid SACK block arrived on this connection
  bool dsack_pending : 1 = false;
  bool rtt_valid : 1 = false;
  bool timing : 1 = false;
  bool persist : 1 = false;
  bool fin_pending : 1 = false;
  bool fin_received : 1 = false;
  bool fin_delivered : 1 = false;
  bool ack_now : 1 = false;
  bool readable_queued : 1 = false;

  ConnectionId id() const { return (uint64_t{generation} << 32) | (slot + 1); }
  bool fin_sent() const { return fin_queued && seq_gt(snd_max, fin_seq); }
  bool fin_acked() const { return fin_queued && seq_gt(snd_una, fin_seq); }
  // Advertised from the configured capacity whether or not a ring is held: the ring grows to
  // whatever the window lets in.
  uint32_t rcv_wnd() const { return engine->config_.recv_buffer_bytes - rbuf_ready; }
};

struct TcpEngine::Event {
  enum Kind : uint8_t { kAccepted, kConnected, kReadable, kWritable, kClosed };
  uint8_t kind;
  TcpCloseReason reason;
  ConnectionId id;
};

TcpEngine::TcpEngine(const TcpConfig& config, clock::Clock clock, timer::TimerWheel& wheel,
                     TcpOutput& output, TcpEvents& events)
    : config_(config),
      clock_(clock),
      wheel_(wheel),
      output_(output),
      events_(events),
      pool_(config.buffer_pool_bytes, config.buffer_cache_bytes),
      // Its hash key, like the block table's, derived from isn_key but not equal to it.
      time_wait_(config.max_time_wait, config.isn_key[0] ^ 0x510e527fade682d1ULL,
                 config.isn_key[1] ^ 0x9b05688c2b3e6c1fULL),
      next_ephemeral_(config.ephemeral_port_min) {
  HERALD_CHECK(config_.mss >= 64, "tcp: mss below 64");
  HERALD_CHECK(config_.window_scale <= 14, "tcp: window_scale above 14");
  HERALD_CHECK(config_.recv_buffer_bytes >= config_.mss, "tcp: recv buffer below one mss");
  HERALD_CHECK(config_.send_buffer_bytes >= 1, "tcp: empty send buffer");
  HERALD_CHECK(config_.reassembly_intervals >= 1, "tcp: no reassembly intervals");
  HERALD_CHECK(
      config_.ephemeral_port_min > 0 && config_.ephemeral_port_min <= config_.ephemeral_port_max,
      "tcp: bad ephemeral port range");
  if (!config_.window_scaling) config_.window_scale = 0;
  // A block keeps its RTO in 32-bit milliseconds: 49 days is beyond any useful RTO.
  config_.initial_rto_ms = std::min<uint64_t>(config_.initial_rto_ms, UINT32_MAX);
  config_.min_rto_ms = std::min<uint64_t>(config_.min_rto_ms, UINT32_MAX);
  config_.max_rto_ms = std::min<uint64_t>(config_.max_rto_ms, UINT32_MAX);
  // 64 KiB windows without scaling: the receive ring cannot be advertised beyond that.
  if (!config_.window_scaling) {
    config_.recv_buffer_bytes = std::min<uint32_t>(config_.recv_buffer_bytes, 65535);
  }
  scratch_.resize(kTcpMaxHeaderBytes + 65536);
  // The table is allocated now, for all of them: a limit beyond 2^28 blocks (1 GiB of table
  // alone) is taken as 2^28.
  config_.max_connections = std::min<uint32_t>(config_.max_connections, 1u << 28);
  uint32_t capacity = 16;
  while (capacity < 2 * uint64_t{config_.max_connections}) capacity *= 2;
  table_.assign(capacity, 0);
  table_mask_ = capacity - 1;
  table_key_[0] = config_.isn_key[0] ^ 0x5be0cd19137e2179ULL;  // a key of its own, derived
  table_key_[1] = config_.isn_key[1] ^ 0x1f83d9abfb41bd6bULL;
}

TcpEngine::~TcpEngine() {
  for (Chunk& chunk : chunks_) {
    if (chunk.blocks != nullptr) destroy_blocks(std::move(chunk.blocks));
  }
  if (spare_blocks_ != nullptr) destroy_blocks(std::move(spare_blocks_));
  if (time_wait_timer_ != timer::kInvalidTimerId) wheel_.release(time_wait_timer_);
}

TcpEngine::Connection* TcpEngine::slot_at(uint32_t slot) const {
  return &chunks_[slot >> kChunkShift].blocks[slot & (kChunkSlots - 1)];
}

uint32_t TcpEngine::lowest_chunk_with_room() {
  for (uint32_t w = room_hint_; w < chunks_with_room_.size(); ++w) {
    if (chunks_with_room_[w] != 0) {
      room_hint_ = w;
      return w * 64 + static_cast<uint32_t>(std::countr_zero(chunks_with_room_[w]));
    }
  }
  room_hint_ = static_cast<uint32_t>(chunks_with_room_.size());
  return static_cast<uint32_t>(chunks_.size());
}

void TcpEngine::mark_slot_free(uint32_t slot) {
  const uint32_t k = slot >> kChunkShift;
  Chunk& chunk = chunks_[k];
  chunk.used &= ~(uint64_t{1} << (slot & (kChunkSlots - 1)));
  chunks_with_room_[k / 64] |= uint64_t{1} << (k % 64);
  room_hint_ = std::min(room_hint_, k / 64);
  if (chunk.used == 0 && !chunk.listed) {
    chunk.listed = true;
    emptied_chunks_.push_back(k);
  }
}

// Blocks for a released (or new) chunk: the spare's if there is one, timers and all.
void TcpEngine::attach_blocks(uint32_t k) {
  Chunk& chunk = chunks_[k];
  if (spare_blocks_ != nullptr) {
    chunk.blocks = std::move(spare_blocks_);
  } else {
    chunk.blocks = std::make_unique<Connection[]>(kChunkSlots);
    ++held_chunks_;
  }
  for (uint32_t i = 0; i < kChunkSlots; ++i) {
    chunk.blocks[i].slot = k * kChunkSlots + i;
    chunk.blocks[i].generation = chunk.last_generation;
  }
  stats_[TcpStats::block_bytes_held] = block_bytes_held();
}

void TcpEngine::destroy_blocks(std::unique_ptr<Connection[]> blocks) {
  for (uint32_t i = 0; i < kChunkSlots; ++i) {
    if (blocks[i].timer != timer::kInvalidTimerId) wheel_.release(blocks[i].timer);
    release_all(&blocks[i]);
  }
  --held_chunks_;
  stats_[TcpStats::block_bytes_held] = block_bytes_held();
}

void TcpEngine::release_emptied_chunks() {
  for (uint32_t k : emptied_chunks_) {
    Chunk& chunk = chunks_[k];
    chunk.listed = false;
    if (chunk.used != 0 || chunk.blocks == nullptr) continue;  // refilled since
    uint32_t last = 0;
    for (uint32_t i = 0; i < kChunkSlots; ++i) last = std::max(last, chunk.blocks[i].generation);
    chunk.last_generation = last;
    if (spare_blocks_ == nullptr) {
      spare_blocks_ = std::move(chunk.blocks);
    } else {
      destroy_blocks(std::move(chunk.blocks));
    }
  }
  emptied_chunks_.clear();
}

uint64_t TcpEngine::block_bytes_held() const {
  return uint64_t{held_chunks_} * kChunkSlots * sizeof(Connection);
}

size_t TcpEngine::connection_block_bytes() {
  return sizeof(Connection);
}

TcpMemory TcpEngine::memory() const {
  TcpMemory m;
  m.blocks_bytes = block_bytes_held();
  m.table_bytes = table_.capacity() * sizeof(uint32_t) + chunks_.capacity() * sizeof(Chunk) +
                  chunks_with_room_.capacity() * sizeof(uint64_t) +
                  emptied_chunks_.capacity() * sizeof(uint32_t);
  m.buffers_bytes = pool_.in_use_bytes();
  m.buffers_cached_bytes = pool_.cached_bytes();
  m.time_wait_bytes = time_wait_.memory_bytes();
  for (const Chunk& chunk : chunks_) {
    if (chunk.blocks == nullptr) continue;
    for (uint32_t i = 0; i < kChunkSlots; ++i) {
      const Connection& c = chunk.blocks[i];
      m.ranges_bytes += (c.ooo.capacity() + c.scoreboard.capacity()) * sizeof(c.ooo[0]);
    }
  }
  return m;
}

uint32_t TcpEngine::now_ms() const {
  return static_cast<uint32_t>(clock_.now_ns() / 1'000'000);
}

uint32_t TcpEngine::make_isn(const FourTuple& t) const {
  // RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond timer.
  return static_cast<uint32_t>(clock_.now_ns() / 4000) +
         static_cast<uint32_t>(siphash_tuple(config_.isn_key, t));
}

// ---------------------------------------------------------------- connection blocks

uint32_t TcpEngine::table_home(const FourTuple& t) const {
  return static_cast<uint32_t>(siphash_tuple(table_key_, t)) & table_mask_;
}

TcpEngine::Connection* TcpEngine::table_find(const FourTuple& t) const {
  for (uint32_t i = table_home(t);; i = (i + 1) & table_mask_) {
    const uint32_t e = table_[i];
    if (e == 0) return nullptr;
    Connection* c = slot_at(e - 1);
    if (c->tuple == t) return c;
  }
}

void TcpEngine::table_insert(const FourTuple& t, uint32_t slot) {
  // At most max_connections live entries in twice as many buckets: an empty one exists.
  uint32_t i = table_home(t);
  while (table_[i] != 0) i = (i + 1) & table_mask_;
  table_[i] = slot + 1;
}

// Backward-shift deletion (no tombstones, so lookups never slow down with churn).
void TcpEngine::table_erase(const FourTuple& t) {
  uint32_t i = table_home(t);
  while (table_[i] != 0 && !(slot_at(table_[i] - 1)->tuple == t)) i = (i + 1) & table_mask_;
  if (table_[i] == 0) return;
  for (uint32_t j = (i + 1) & table_mask_; table_[j] != 0; j = (j + 1) & table_mask_) {
    const uint32_t home = table_home(slot_at(table_[j] - 1)->tuple);
    // Move j back into the hole at i unless its home lies cyclically in (i, j].
    const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = 0;
}

TcpEngine::Connection* TcpEngine::find(ConnectionId id) const {
  uint32_t slot = static_cast<uint32_t>(id & 0xffffffffu);
  if (slot == 0 || slot > slot_count()) return nullptr;
  if (chunks_[(slot - 1) >> kChunkShift].blocks == nullptr) return nullptr;  // released
  Connection* c = slot_at(slot - 1);
  return c->live && c->id() == id ? c : nullptr;
}

TcpEngine::Listener* TcpEngine::find_listener(const IpAddr& dst, uint16_t port) const {
  for (auto& cand : listeners_) {
    if (cand->port == port && (cand->any ? cand->addr.family == dst.family : cand->addr == dst)) {
      return cand.get();
    }
  }
  return nullptr;
}

TcpEngine::Connection* TcpEngine::new_connection(const FourTuple& tuple) {
  if (live_count_ >= config_.max_connections) {
    ++stats_[TcpStats::drop_connection_limit];
    return nullptr;
  }
  const uint32_t k = lowest_chunk_with_room();
  if (k == chunks_.size()) {
    chunks_.emplace_back();
    if (k / 64 == chunks_with_room_.size()) chunks_with_room_.push_back(0);
    chunks_with_room_[k / 64] |= uint64_t{1} << (k % 64);
    room_hint_ = std::min(room_hint_, k / 64);
  }
  Chunk& chunk = chunks_[k];
  if (chunk.blocks == nullptr) attach_blocks(k);
  const uint32_t i = static_cast<uint32_t>(std::countr_one(chunk.used));
  chunk.used |= uint64_t{1} << i;
  if (chunk.used == ~uint64_t{0}) chunks_with_room_[k / 64] &= ~(uint64_t{1} << (k % 64));
  Connection* c = &chunk.blocks[i];
  if (c->timer == timer::kInvalidTimerId) {
    c->timer = wheel_.alloc(&TcpEngine::on_timer, reinterpret_cast<uint64_t>(c));
    if (c->timer == timer::kInvalidTimerId) {
      ++stats_[TcpStats::timer_alloc_failed];
      mark_slot_free(c->slot);
      return nullptr;
    }
  }
  // Reset every field but the slot and its timer (a free block holds no ring or range list:
  // free_connection released them).
  uint32_t slot = c->slot, generation = c->generation + 1;
  timer::TimerId timer = c->timer;
  *c = Connection{};
  c->slot = slot;
  c->generation = generation;
  c->timer = timer;
  c->engine = this;
  c->live = true;
  c->tuple = tuple;
  c->rto_ms = static_cast<uint32_t>(config_.initial_rto_ms);
  ++live_count_;
  stats_[TcpStats::connection_blocks] = live_count_;
  table_insert(tuple, slot);
  return c;
}

void TcpEngine::free_connection(Connection* c) {
  wheel_.cancel(c->timer);
  table_erase(c->tuple);
  if (c->in_syn_queue && c->listener != nullptr) {
    --c->listener->syn_count;
    --stats_[TcpStats::syn_queue_length];
  }
  if (c->state == TcpState::kTimeWait) --stats_[TcpStats::time_wait_blocks];  // reused
  if (c->in_backlog && c->listener != nullptr) {
    auto& b = c->listener->backlog;
    b.erase(std::remove(b.begin(), b.end(), c->id()), b.end());
  }
  release_all(c);
  c->live = false;
  c->state = TcpState::kClosed;
  --live_count_;
  stats_[TcpStats::connection_blocks] = live_count_;
  mark_slot_free(c->slot);
}

void TcpEngine::maybe_free(Connection* c) {
  if (c->live && c->state == TcpState::kClosed && !c->app_open) free_connection(c);
}

// ---------------------------------------------------------------- rings

bool TcpEngine::grow_ring(uint8_t** buffer, uint32_t* cap, uint32_t* head, uint32_t need,
                          uint32_t max) {
  if (need <= *cap) return true;
  const uint32_t bytes = BufferPool::class_bytes(need, max);
  uint8_t* fresh = pool_.alloc(bytes);
  if (fresh == nullptr) {
    ++stats_[TcpStats::buffer_alloc_refused];
    return false;
  }
  if (*buffer != nullptr) {
    // Unwrapped from the head: ring offset i (in-order and held out-of-order bytes alike)
    // lands at i, so every position relative to the head is kept.
    const uint32_t first = *cap - *head;
    std::memcpy(fresh, *buffer + *head, first);
    std::memcpy(fresh + first, *buffer, *head);
    pool_.release(*buffer, *cap);
  }
  *buffer = fresh;
  *cap = bytes;
  *head = 0;
  update_pool_stats();
  return true;
}

void TcpEngine::release_send_buffer(Connection* c) {
  if (c->sbuf_len != 0) return;
  if (c->sbuf != nullptr) {
    pool_.release(c->sbuf, c->sbuf_cap);
    c->sbuf = nullptr;
    c->sbuf_cap = c->sbuf_head = 0;
    update_pool_stats();
  }
  if (c->scoreboard.empty()) c->scoreboard.release();
}

void TcpEngine::release_recv_buffer(Connection* c) {
  if (c->rbuf_ready != 0 || !c->ooo.empty()) return;
  if (c->rbuf != nullptr) {
    pool_.release(c->rbuf, c->rbuf_cap);
    c->rbuf = nullptr;
    c->rbuf_cap = c->rbuf_head = 0;
    update_pool_stats();
  }
  c->ooo.release();
}

// A block going away (or into TIME-WAIT with nothing left to deliver): everything it holds.
void TcpEngine::release_all(Connection* c) {
  c->sbuf_len = 0;
  c->scoreboard.clear();
  release_send_buffer(c);
  c->rbuf_ready = 0;
  c->ooo.clear();
  release_recv_buffer(c);
}

void TcpEngine::update_pool_stats() {
  stats_[TcpStats::buffer_bytes_in_use] = pool_.in_use_bytes();
  stats_[TcpStats::buffer_bytes_high_water] = pool_.high_water_bytes();
  stats_[TcpStats::buffer_bytes_cached] = pool_.cached_bytes();
}

// ---------------------------------------------------------------- application calls

bool TcpEngine::listen(const IpAddr& addr, uint16_t port) {
  for (auto& l : listeners_) {
    if (l->port == port) return false;
  }
  auto l = std::make_unique<Listener>();
  l->addr = addr;
  l->any = std::all_of(addr.bytes, addr.bytes + 16, [](uint8_t b) { return b == 0; });
  l->port = port;
  listeners_.push_back(std::move(l));
  return true;
}

void TcpEngine::set_accepting(uint16_t port, bool accepting) {
  for (auto& l : listeners_) {
    if (l->port != port) continue;
    l->accepting = accepting;
    if (!accepting) return;
    std::vector<ConnectionId> backlog = std::move(l->backlog);
    l->backlog.clear();
    for (ConnectionId id : backlog) {
      Connection* c = find(id);
      if (c == nullptr) continue;
      c->in_backlog = false;
      c->listener = nullptr;
      c->app_open = true;
      push_event(Event::kAccepted, c);
      if (c->rbuf_ready > 0) push_event(Event::kReadable, c);
    }
  }
}

ConnectionId TcpEngine::connect(const IpAddr& local, uint16_t local_port, const IpAddr& remote,
                                uint16_t remote_port) {
  FourTuple t{local, remote, local_port, remote_port};
  if (local_port == 0) {
    const uint32_t range = config_.ephemeral_port_max - config_.ephemeral_port_min + 1u;
    bool found = false;
    for (uint32_t i = 0; i < range && !found; ++i) {
      t.local_port = next_ephemeral_;
      next_ephemeral_ = next_ephemeral_ >= config_.ephemeral_port_max
                            ? config_.ephemeral_port_min
                            : static_cast<uint16_t>(next_ephemeral_ + 1);
      // A tuple in TIME-WAIT is taken, as it was while a block held its TIME-WAIT.
      found = table_find(t) == nullptr && time_wait_find(t) == TimeWaitTable::kNone &&
              (!local_port_filter_ || local_port_filter_(t));
    }
    if (!found) return kNoConnection;
  } else if (table_find(t) != nullptr || time_wait_find(t) != TimeWaitTable::kNone) {
    return kNoConnection;
  }
  Connection* c = new_connection(t);
  if (c == nullptr) return kNoConnection;
  ++stats_[TcpStats::active_opens];
  c->iss = make_isn(t);
  c->ts_offset = static_cast<uint32_t>(c->iss * 2654435761u);
  c->snd_una = c->snd_nxt = c->snd_max = c->iss;
  c->sbuf_seq = c->iss + 1;
  c->state = TcpState::kSynSent;
  c->app_open = true;
  send_syn(c);
  start_rto(c);
  arm_timer(c);
  return c->id();
}

uint32_t TcpEngine::send_space(ConnectionId id) const {
  Connection* c = find(id);
  if (c == nullptr || !c->app_open || c->fin_queued) return 0;
  // What send() takes now: up to the configured limit, less when the pool could not grow the
  // ring that far. Sends that add up to it always succeed, one after another too (a gather):
  // growing to a class moves through the smaller ones, each move holding the old ring and the
  // new one, so reaching `size` needs room for it and the class below it at once, less the
  // ring held now (a class below `size`, released by the first move).
  const uint32_t max = config_.send_buffer_bytes;
  uint32_t room = c->sbuf_cap;
  uint32_t below = 0;
  for (uint64_t bytes = BufferPool::kMinClassBytes;; bytes *= 4) {
    const uint32_t size = static_cast<uint32_t>(std::min<uint64_t>(bytes, max));
    if (size > room && pool_.can_alloc(uint64_t{below} + size - c->sbuf_cap)) room = size;
    if (size == max) break;
    below = size;
  }
  return room - c->sbuf_len;
}

uint32_t TcpEngine::queued_bytes(ConnectionId id) const {
  Connection* c = find(id);
  return c == nullptr ? 0 : c->sbuf_len;
}

SendResult TcpEngine::send(ConnectionId id, std::span<const uint8_t> bytes) {
  Connection* c = find(id);
  if (c == nullptr || !c->app_open || c->fin_queued) return SendResult::kClosed;
  // Past the configured limit, or past what the pool can give (counted as a refusal too):
  // the same slow-consumer reset either way.
  if (bytes.size() > config_.send_buffer_bytes - c->sbuf_len ||
      !grow_ring(&c->sbuf, &c->sbuf_cap, &c->sbuf_head,
                 c->sbuf_len + static_cast<uint32_t>(bytes.size()), config_.send_buffer_bytes)) {
    ++stats_[TcpStats::send_queue_full];
    abort(c, TcpCloseReason::kSendQueueFull, true);
    return SendResult::kQueueFull;
  }
  size_t n = bytes.size();
  if (n > 0) {
    const uint32_t cap = c->sbuf_cap;
    uint32_t tail = (c->sbuf_head + c->sbuf_len) % cap;
    size_t first = std::min<size_t>(n, cap - tail);
    std::memcpy(c->sbuf + tail, bytes.data(), first);
    if (n > first) std::memcpy(c->sbuf, bytes.data() + first, n - first);
  }
  c->sbuf_len += static_cast<uint32_t>(n);
  if (c->sbuf_len > config_.send_low_water_bytes) c->above_low_water = true;
  transmit(c);
  arm_timer(c);
  return SendResult::kOk;
}

void TcpEngine::close(ConnectionId id, CloseMode mode) {
  Connection* c = find(id);
  if (c == nullptr || !c->app_open) return;
  if (mode == CloseMode::kAbort) {
    abort(c, TcpCloseReason::kLocalAbort, true);
    return;
  }
  if (c->fin_queued) return;
  switch (c->state) {
    // Not yet established: the FIN waits for the handshake (what was sent is still owed),
    // rather than RFC 9293's "delete the TCB" which would drop queued data.
    case TcpState::kSynSent:
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
    case TcpState::kCloseWait:
      c->fin_queued = true;
      c->fin_seq = c->sbuf_seq + c->sbuf_len;
      if (c->state == TcpState::kEstablished) c->state = TcpState::kFinWait1;
      if (c->state == TcpState::kCloseWait) c->state = TcpState::kLastAck;
      transmit(c);
      arm_timer(c);
      return;
    default: return;
  }
}

void TcpEngine::set_reading(ConnectionId id, bool reading) {
  Connection* c = find(id);
  if (c == nullptr || !c->app_open) return;
  c->reading = reading;
  if (reading && (c->rbuf_ready > 0 || (c->fin_received && !c->fin_delivered))) {
    push_event(Event::kReadable, c);
  }
}

bool TcpEngine::info(ConnectionId id, ConnectionInfo* out) const {
  Connection* c = find(id);
  if (c == nullptr) return false;
  out->state = c->state;
  out->snd_una = c->snd_una;
  out->snd_nxt = c->snd_nxt;
  out->snd_wnd = c->snd_wnd;
  out->rcv_nxt = c->rcv_nxt;
  out->rcv_wnd = c->rcv_wnd();
  out->cwnd = c->cwnd;
  out->ssthresh = c->ssthresh;
  out->mss = c->eff_mss;
  out->snd_wscale = c->snd_wscale;
  out->rcv_wscale = c->rcv_wscale;
  out->timestamps = c->ts_ok;
  out->rto_ms = c->rto_ms;
  out->retransmits = c->retransmits;
  out->in_recovery = c->in_recovery;
  out->sack = c->sack_ok;
  out->sacked_ranges = static_cast<uint32_t>(c->scoreboard.size());
  out->sacked_bytes = sacked_below(c, c->snd_max);
  out->send_buffer_bytes = c->sbuf_cap;
  out->recv_buffer_bytes = c->rbuf_cap;
  return true;
}

void TcpEngine::stop() {
  for (auto& l : listeners_) l->backlog.clear();
  listeners_.clear();
  for (uint32_t i = 0; i < slot_count(); ++i) {
    if (chunks_[i >> kChunkShift].blocks == nullptr) continue;  // released before stop()
    Connection* c = slot_at(i);
    if (!c->live) continue;
    c->listener = nullptr;
    if (c->in_syn_queue) --stats_[TcpStats::syn_queue_length];
    c->in_backlog = c->in_syn_queue = false;
    abort(c, TcpCloseReason::kShutdown, c->state != TcpState::kTimeWait);
  }
  // TIME-WAIT entries end silently, as TIME-WAIT blocks do (nobody holds them).
  time_wait_.clear();
  time_wait_gauge();
  if (time_wait_timer_ != timer::kInvalidTimerId) wheel_.cancel(time_wait_timer_);
  poll();
}

// ---------------------------------------------------------------- events

void TcpEngine::push_event(uint8_t kind, Connection* c, TcpCloseReason reason) {
  if (kind == Event::kReadable) {
    if (c->readable_queued) return;
    c->readable_queued = true;
  }
  events_queue_.push_back(Event{kind, reason, c->id()});
}

void TcpEngine::poll() {
  if (dispatching_) return;
  dispatching_ = true;
  while (events_head_ < events_queue_.size()) {
    Event e = events_queue_[events_head_++];
    if (e.kind == Event::kClosed) {
      events_.on_closed(e.id, e.reason);
      continue;
    }
    Connection* c = find(e.id);
    if (c == nullptr || !c->app_open) continue;
    switch (e.kind) {
      case Event::kAccepted: events_.on_accepted(e.id, c->tuple); break;
      case Event::kConnected: events_.on_connected(e.id); break;
      case Event::kWritable: events_.on_writable(e.id); break;
      case Event::kReadable:
        c->readable_queued = false;
        deliver_readable(c);
        // Its FIN delivered in TIME-WAIT, the application let go: an entry replaces the block.
        if (find(e.id) == c) compact_time_wait(c);
        break;
    }
  }
  events_queue_.clear();
  events_head_ = 0;
  dispatching_ = false;
  // Nothing of the engine holds a block pointer across the outermost poll().
  if (!emptied_chunks_.empty()) release_emptied_chunks();
}

void TcpEngine::deliver_readable(Connection* c) {
  const ConnectionId id = c->id();
  bool delivered = false;
  while (c->reading && c->rbuf_ready > 0) {
    const uint32_t cap = c->rbuf_cap;
    uint32_t n = std::min(c->rbuf_ready, cap - c->rbuf_head);
    std::span<const uint8_t> bytes(c->rbuf + c->rbuf_head, n);
    // Consumed before the call: a handler that closes or resets leaves a consistent block.
    c->rbuf_head = (c->rbuf_head + n) % cap;
    c->rbuf_ready -= n;
    delivered = true;
    events_.on_data(id, bytes);
    if (find(id) != c || !c->app_open) return;
  }
  // All delivered and nothing held out of order: the ring goes back to the pool.
  release_recv_buffer(c);
  if (c->reading && c->rbuf_ready == 0 && c->fin_received && !c->fin_delivered) {
    c->fin_delivered = true;
    events_.on_peer_closed(id);
    if (find(id) != c || !c->app_open) return;
    finish_normally(c);
    return;
  }
  // Window update (RFC 9293 3.8.6.2.2): tell the peer once the window grew by enough to matter,
  // so a sender stopped on a zero or small window resumes without waiting for its persist timer.
  if (delivered && (c->state == TcpState::kEstablished || c->state == TcpState::kFinWait1 ||
                    c->state == TcpState::kFinWait2)) {
    uint32_t wnd = (c->rcv_wnd() >> c->rcv_wscale) << c->rcv_wscale;
    uint32_t threshold = std::min<uint32_t>(2 * c->eff_mss, config_.recv_buffer_bytes / 2);
    if (wnd >= c->last_adv_wnd + threshold || (c->last_adv_wnd < c->eff_mss && wnd >= c->eff_mss)) {
      ++stats_[TcpStats::window_updates];
      send_ack(c);
      arm_timer(c);
    }
  }
}

// The application's side of a normal end: both FINs done and the peer's delivered.
void TcpEngine::finish_normally(Connection* c) {
  if (!c->app_open || !c->fin_delivered) return;
  if (c->state != TcpState::kTimeWait && c->state != TcpState::kClosed) return;
  c->app_open = false;
  push_event(Event::kClosed, c, TcpCloseReason::kNormal);
  maybe_free(c);
}

void TcpEngine::abort(Connection* c, TcpCloseReason reason, bool send_rst) {
  const bool synced = c->state != TcpState::kSynSent && c->state != TcpState::kClosed &&
                      c->state != TcpState::kListen;
  if (send_rst && synced) {
    SegmentSpec s;
    s.src_port = c->tuple.local_port;
    s.dst_port = c->tuple.remote_port;
    // A peer takes a RST only inside its window (RFC 5961: at RCV.NXT, else a challenge
    // ACK). Past a closed or full window (a slow consumer cut off) SND.NXT is beyond it and
    // the RST would be dropped, leaving the peer ESTABLISHED: use the window's right edge
    // then, as Linux does (tcp_acceptable_seq). Found by tests/integration/dataplane_e2e_dpdk.
    const uint32_t right_edge = c->snd_una + c->snd_wnd;
    s.seq = seq_gt(c->snd_nxt, right_edge) ? right_edge : c->snd_nxt;
    s.ack = c->rcv_nxt;
    s.flags = kRst | kAck;
    ++stats_[TcpStats::reset_sent];
    emit(c->tuple.local, c->tuple.remote, s, {});
  }
  if (c->state == TcpState::kTimeWait) --stats_[TcpStats::time_wait_blocks];
  c->state = TcpState::kClosed;
  if (c->app_open) {
    c->app_open = false;
    push_event(Event::kClosed, c, reason);
  }
  free_connection(c);
}

// ---------------------------------------------------------------- input

void TcpEngine::input(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> bytes,
                      bool checksum_verified) {
  ++stats_[TcpStats::segments_in];
  Segment seg;
  switch (parse_segment(src, dst, bytes, checksum_verified, &seg)) {
    case ParseError::kNone: break;
    case ParseError::kTooShort: ++stats_[TcpStats::drop_too_short]; return;
    case ParseError::kBadDataOffset: ++stats_[TcpStats::drop_bad_data_offset]; return;
    case ParseError::kBadFlags: ++stats_[TcpStats::drop_bad_flags]; return;
    case ParseError::kBadOptions: ++stats_[TcpStats::drop_bad_options]; return;
    case ParseError::kBadChecksum: ++stats_[TcpStats::drop_bad_checksum]; return;
    case ParseError::kBadPort: ++stats_[TcpStats::drop_bad_port]; return;
  }
  if (src.family != dst.family || src == dst) {
    ++stats_[TcpStats::drop_bad_address];
    return;
  }
  FourTuple t{dst, src, seg.dst_port, seg.src_port};
  if (Connection* c = table_find(t); c != nullptr) {
    if (c->state == TcpState::kTimeWait && seg.has(kSyn) && !seg.has(kAck) && !c->app_open) {
      // RFC 6191 (and RFC 9293 3.10.7.4's TIME-WAIT note): a new SYN whose timestamp, or
      // without timestamps whose ISN, is above the old incarnation's cannot be confused with
      // it: the TIME-WAIT block makes way for a new passive open.
      const bool newer = c->ts_ok && seg.options.has_timestamps
                             ? seq_gt(seg.options.ts_val, c->ts_recent)
                             : seq_gt(seg.seq, c->rcv_nxt);
      Listener* l = newer ? find_listener(dst, seg.dst_port) : nullptr;
      if (l != nullptr) {
        ++stats_[TcpStats::time_wait_reused];
        free_connection(c);
        listen_input(l, t, seg);
        poll();
        return;
      }
    }
    if (c->finwait2_at_ns != 0 && c->state == TcpState::kFinWait2) {
      // Idle timeout: any segment from the peer shows it is still there.
      c->finwait2_at_ns = clock_.now_ns() + config_.fin_wait2_timeout_ms * 1'000'000;
    }
    if (c->state == TcpState::kSynSent) {
      syn_sent_input(c, seg);
    } else {
      synced_input(c, seg);
    }
    // In TIME-WAIT with the application gone (its FIN delivered, on_closed queued): an entry
    // replaces the block, now that nothing of this segment is left to do.
    if (c->live && c->tuple == t && !compact_time_wait(c)) arm_timer(c);
  } else if (const uint32_t tw = time_wait_find(t); tw != TimeWaitTable::kNone) {
    time_wait_input(tw, t, seg);
  } else {
    Listener* l = find_listener(dst, seg.dst_port);
    if (l != nullptr) {
      listen_input(l, t, seg);
    } else if (seg.has(kRst)) {
      ++stats_[TcpStats::drop_rst_no_connection];
    } else if (!rate_allow(&rst_budget_, config_.rst_limit_per_s)) {
      ++stats_[TcpStats::rst_rate_limited];
    } else {
      ++stats_[TcpStats::rst_closed_port];
      send_reset_for(dst, src, seg);
    }
  }
  poll();
}

static void negotiate(const TcpConfig& config, const Segment& seg, TcpEngine::Connection* c);

void TcpEngine::listen_input(Listener* l, const FourTuple& tuple, const Segment& seg) {
  if (seg.has(kRst)) {
    ++stats_[TcpStats::drop_rst_no_connection];
    return;
  }
  if (seg.has(kAck)) {
    if (!seg.has(kSyn) && accept_syn_cookie(l, tuple, seg)) return;
    // The closed-port budget also covers these: a flood of forged cookie ACKs would otherwise
    // be reflected one RST each at whatever address they claim.
    if (!rate_allow(&rst_budget_, config_.rst_limit_per_s)) {
      ++stats_[TcpStats::rst_rate_limited];
      return;
    }
    ++stats_[TcpStats::rst_listen_ack];
    send_reset_for(tuple.local, tuple.remote, seg);
    return;
  }
  if (!seg.has(kSyn)) {
    ++stats_[TcpStats::drop_listen_non_syn];
    return;
  }
  if (l->backlog.size() >= config_.accept_backlog) {
    ++stats_[TcpStats::drop_accept_backlog_full];
    return;
  }
  if (l->syn_count >= config_.syn_queue) {
    if (config_.syn_cookies) {
      send_syn_cookie(tuple, seg);
    } else {
      ++stats_[TcpStats::drop_syn_queue_full];
    }
    return;
  }
  Connection* c = new_connection(tuple);
  if (c == nullptr) return;
  ++stats_[TcpStats::passive_opens];
  c->passive = true;
  c->listener = l;
  c->in_syn_queue = true;
  ++l->syn_count;
  ++stats_[TcpStats::syn_queue_length];
  c->irs = seg.seq;
  c->rcv_nxt = seg.seq + 1;
  c->iss = make_isn(tuple);
  c->ts_offset = static_cast<uint32_t>(c->iss * 2654435761u);
  c->snd_una = c->snd_nxt = c->snd_max = c->iss;
  c->sbuf_seq = c->iss + 1;
  negotiate(config_, seg, c);
  c->snd_wnd = seg.window;  // never scaled in a SYN (RFC 7323 2.2)
  c->snd_wl1 = seg.seq;
  if (!seg.payload.empty()) ++stats_[TcpStats::drop_syn_data];
  c->state = TcpState::kSynReceived;
  send_syn(c);
  start_rto(c);
  arm_timer(c);
}

// ---------------------------------------------------------------- SYN cookies (RFC 4987)
//
// When a listener's SYN queue is full, the SYN-ACK's ISN carries the state instead of a block:
//   bits 31..27  coarse time: 64-second periods, mod 32
//   bits 26..24  index of the peer's MSS in kCookieMss (the largest entry not above it)
//   bits 23..0   SipHash(syn_cookie_key; 4-tuple, peer ISN, period, MSS index)
// Window scale and SACK-permitted ride in the low 6 bits of our TSval, echoed back in the
// ACK's TSecr, as Linux does: bits 0..3 the peer's shift (15: none), bit 4 SACK-permitted. A
// peer without timestamps gets neither (also as Linux). The period in the hash is the rotating
// part of the secret: a cookie is valid in its own period and the next (64..128 s).

namespace {
constexpr uint16_t kCookieMss[8] = {216, 536, 1024, 1220, 1300, 1400, 1440, 1460};
constexpr uint64_t kCookiePeriodNs = 64ull * 1'000'000'000;
constexpr uint32_t kCookieNoWscale = 15;
}  // namespace

uint32_t TcpEngine::cookie_hash(const FourTuple& t, uint32_t peer_isn, uint32_t period,
                                uint32_t mss_index) const {
  uint8_t buf[45];
  std::memcpy(buf, t.local.bytes, 16);
  std::memcpy(buf + 16, t.remote.bytes, 16);
  std::memcpy(buf + 32, &t.local_port, 2);
  std::memcpy(buf + 34, &t.remote_port, 2);
  std::memcpy(buf + 36, &peer_isn, 4);
  std::memcpy(buf + 40, &period, 4);
  buf[44] = static_cast<uint8_t>(mss_index);
  return static_cast<uint32_t>(siphash(config_.syn_cookie_key, buf, sizeof(buf))) & 0xffffff;
}

void TcpEngine::send_syn_cookie(const FourTuple& tuple, const Segment& syn) {
  const uint32_t period = static_cast<uint32_t>(clock_.now_ns() / kCookiePeriodNs) & 31;
  const uint32_t peer_mss = syn.options.has_mss ? syn.options.mss : kDefaultPeerMss;
  uint32_t index = 0;
  while (index + 1 < 8 && kCookieMss[index + 1] <= peer_mss) ++index;
  const uint32_t iss = (period << 27) | (index << 24) | cookie_hash(tuple, syn.seq, period, index);
  SegmentSpec s;
  s.src_port = tuple.local_port;
  s.dst_port = tuple.remote_port;
  s.seq = iss;
  s.ack = syn.seq + 1;
  s.flags = kSyn | kAck;
  s.window = static_cast<uint16_t>(std::min<uint32_t>(config_.recv_buffer_bytes, 65535));
  s.mss = true;
  s.mss_value = config_.mss;
  if (config_.timestamps && syn.options.has_timestamps) {
    s.timestamps = true;
    const bool wscale = config_.window_scaling && syn.options.has_wscale;
    s.wscale = wscale;
    s.wscale_value = config_.window_scale;
    s.sack_permitted = config_.sack && syn.options.sack_permitted;
    const uint32_t bits =
        (wscale ? syn.options.wscale : kCookieNoWscale) | (s.sack_permitted ? 0x10u : 0u);
    // The connection's TSvals will be now_ms + offset(iss): the cookie's must not exceed them
    // (the peer's PAWS), so the encoded value is rounded down, never up.
    const uint32_t now_ts = now_ms() + static_cast<uint32_t>(iss * 2654435761u);
    uint32_t tsval = (now_ts & ~0x3fu) | bits;
    if (seq_gt(tsval, now_ts)) tsval -= 64;
    s.ts_val = tsval;
    s.ts_ecr = syn.options.ts_val;
  }
  ++stats_[TcpStats::syn_cookies_sent];
  last_cookie_ns_ = clock_.now_ns();
  cookies_sent_ = true;
  emit(tuple.local, tuple.remote, s, {});
}

// An ACK to a listener: a connection if it carries a valid cookie, else false (the caller
// answers with RST). Checked only while cookies were sent in the last two periods, so plain
// stray ACKs are not counted as forged cookies.
bool TcpEngine::accept_syn_cookie(Listener* l, const FourTuple& tuple, const Segment& ack) {
  const uint64_t now = clock_.now_ns();
  if (!config_.syn_cookies || !cookies_sent_ || now - last_cookie_ns_ > 2 * kCookiePeriodNs) {
    return false;
  }
  const uint32_t cookie = ack.ack - 1, peer_isn = ack.seq - 1;
  const uint32_t period = cookie >> 27, index = (cookie >> 24) & 7;
  const uint32_t age = ((static_cast<uint32_t>(now / kCookiePeriodNs) & 31) - period) & 31;
  if (age > 1 || cookie_hash(tuple, peer_isn, period, index) != (cookie & 0xffffff)) {
    ++stats_[TcpStats::syn_cookies_rejected];
    return false;
  }
  if (l->backlog.size() >= config_.accept_backlog) {
    ++stats_[TcpStats::drop_accept_backlog_full];
    return true;  // valid but no room: dropped, the peer retransmits
  }
  Connection* c = new_connection(tuple);
  if (c == nullptr) return true;
  ++stats_[TcpStats::syn_cookies_accepted];
  ++stats_[TcpStats::passive_opens];
  c->passive = true;
  c->listener = l;
  c->in_syn_queue = true;  // momentarily: the SYN-RECEIVED path below takes it out again
  ++l->syn_count;
  ++stats_[TcpStats::syn_queue_length];
  c->irs = peer_isn;
  c->rcv_nxt = ack.seq;
  c->last_ack_sent = ack.seq;
  c->iss = cookie;
  c->ts_offset = static_cast<uint32_t>(c->iss * 2654435761u);
  c->snd_una = c->iss;
  c->snd_nxt = c->snd_max = c->iss + 1;
  c->sbuf_seq = c->iss + 1;
  c->peer_mss = kCookieMss[index];
  c->ts_ok = config_.timestamps && ack.options.has_timestamps;
  const uint32_t bits = c->ts_ok ? ack.options.ts_ecr & 0x3f : kCookieNoWscale;
  if (config_.window_scaling && (bits & 0xf) != kCookieNoWscale) {
    c->snd_wscale = static_cast<uint8_t>(std::min<uint32_t>(bits & 0xf, 14));
    c->rcv_wscale = config_.window_scale;
  }
  c->sack_ok = config_.sack && c->ts_ok && (bits & 0x10) != 0;
  if (c->ts_ok) c->ts_recent = ack.options.ts_val;
  c->eff_mss =
      std::min<uint32_t>(c->peer_mss, config_.mss) - (c->ts_ok ? kTimestampOptionBytes : 0);
  c->cwnd = config_.initial_cwnd_segments * c->eff_mss;
  c->snd_wl1 = peer_isn;
  c->state = TcpState::kSynReceived;
  // The ACK completes the handshake through the ordinary SYN-RECEIVED path (its data too).
  synced_input(c, ack);
  if (c->live && c->state == TcpState::kSynReceived) free_connection(c);
  if (c->live) arm_timer(c);
  return true;
}

static void negotiate(const TcpConfig& config, const Segment& seg, TcpEngine::Connection* c) {
  c->peer_mss = seg.options.has_mss ? std::max<uint32_t>(seg.options.mss, 64) : kDefaultPeerMss;
  if (config.window_scaling && seg.options.has_wscale) {
    c->snd_wscale = seg.options.wscale;
    c->rcv_wscale = config.window_scale;
  } else {
    c->snd_wscale = c->rcv_wscale = 0;
  }
  c->ts_ok = config.timestamps && seg.options.has_timestamps;
  c->sack_ok = config.sack && seg.options.sack_permitted;
  if (c->ts_ok) c->ts_recent = seg.options.ts_val;
  c->eff_mss = std::min<uint32_t>(c->peer_mss, config.mss) - (c->ts_ok ? kTimestampOptionBytes : 0);
  c->cwnd = config.initial_cwnd_segments * c->eff_mss;
}

void TcpEngine::syn_sent_input(Connection* c, const Segment& seg) {
  bool ack_ok = false;
  if (seg.has(kAck)) {
    if (seq_le(seg.ack, c->iss) || seq_gt(seg.ack, c->snd_max)) {
      ++stats_[TcpStats::drop_syn_sent_bad_ack];
      if (!seg.has(kRst)) send_reset_for(c->tuple.local, c->tuple.remote, seg);
      return;
    }
    ack_ok = true;
  }
  if (seg.has(kRst)) {
    if (ack_ok) {
      ++stats_[TcpStats::refused];
      abort(c, TcpCloseReason::kRefused, false);
    } else {
      ++stats_[TcpStats::drop_rst_out_of_window];
    }
    return;
  }
  if (!seg.has(kSyn)) {
    ++stats_[TcpStats::drop_syn_sent_no_syn];
    return;
  }
  c->irs = seg.seq;
  c->rcv_nxt = seg.seq + 1;
  negotiate(config_, seg, c);
  c->snd_wnd = seg.window;
  c->snd_wl1 = seg.seq;
  c->snd_wl2 = seg.ack;
  if (!seg.payload.empty()) ++stats_[TcpStats::drop_syn_data];
  if (ack_ok) {
    c->snd_una = seg.ack;
    if (c->ts_ok && seg.options.ts_ecr != 0 && c->retransmits == 0) {
      update_rtt(c, now_ms() + c->ts_offset - seg.options.ts_ecr);
    }
    enter_established(c);
    push_event(Event::kConnected, c);
    c->ack_now = true;
    transmit(c);
    if (c->ack_now) send_ack(c);
  } else {
    // Simultaneous open (RFC 9293 3.5, figure 8): SYN-RECEIVED, answer SYN,ACK.
    ++stats_[TcpStats::simultaneous_opens];
    c->state = TcpState::kSynReceived;
    send_syn(c);
  }
}

uint32_t TcpEngine::ssthresh_after_congestion(Connection* c, uint32_t flight) {
  ++stats_[TcpStats::congestion_events];
  if (config_.congestion_control == CongestionControl::kCubic) {
    return cubic_on_congestion(c->cubic, c->cwnd, flight, c->eff_mss);
  }
  return std::max(flight / 2, 2 * c->eff_mss);  // RFC 5681 eq. 4
}

void TcpEngine::enter_established(Connection* c) {
  ++stats_[TcpStats::established];
  c->state = c->fin_queued ? TcpState::kFinWait1 : TcpState::kEstablished;
  c->retransmits = 0;
  c->backoff = 0;
  c->rto_at_ns = 0;
  c->snd_nxt = seq_max(c->snd_nxt, c->snd_una);
  c->max_snd_wnd = c->snd_wnd;
  c->recover = c->iss;  // RFC 6582 3.2 step 1
  c->high_rxt = c->snd_una;
  if (config_.keepalive_idle_ms > 0) {
    c->keepalive_at_ns = clock_.now_ns() + config_.keepalive_idle_ms * 1'000'000;
  }
}

void TcpEngine::synced_input(Connection* c, const Segment& seg) {
  const uint32_t seg_len = seg.seg_len();
  const uint64_t now_ns = clock_.now_ns();

  // RFC 7323 5.3: PAWS before the sequence check.
  if (c->ts_ok && seg.options.has_timestamps && !seg.has(kRst) &&
      seq_lt(seg.options.ts_val, c->ts_recent) && c->state != TcpState::kSynReceived) {
    ++stats_[TcpStats::drop_paws];
    send_challenge_ack(c);
    return;
  }

  // Simultaneous open (RFC 9293 figure 8): the peer's SYN,ACK repeats its SYN (SEQ = IRS, left
  // of the window); its ACK of our SYN completes the handshake here as a plain ACK would.
  if (c->state == TcpState::kSynReceived && !c->passive && seg.has(kSyn) && seg.has(kAck) &&
      !seg.has(kRst) && seg.seq == c->irs && seq_gt(seg.ack, c->snd_una) &&
      seq_le(seg.ack, c->snd_max)) {
    c->snd_wnd = seg.window;  // a SYN's window is never scaled
    c->snd_wl1 = seg.seq;
    c->snd_wl2 = seg.ack;
    c->snd_una = seg.ack;
    enter_established(c);
    push_event(Event::kConnected, c);
    c->ack_now = true;
    transmit(c);
    if (c->ack_now) send_ack(c);
    return;
  }

  // Step 1: sequence number acceptable? (RFC 9293 3.10.7.4, the four cases.)
  const uint32_t wnd = c->rcv_wnd();
  bool acceptable;
  if (seg_len == 0) {
    acceptable = wnd == 0 ? seg.seq == c->rcv_nxt
                          : seq_ge(seg.seq, c->rcv_nxt) && seq_lt(seg.seq, c->rcv_nxt + wnd);
  } else {
    const uint32_t last = seg.seq + seg_len - 1;
    acceptable = wnd != 0 && ((seq_ge(seg.seq, c->rcv_nxt) && seq_lt(seg.seq, c->rcv_nxt + wnd)) ||
                              (seq_ge(last, c->rcv_nxt) && seq_lt(last, c->rcv_nxt + wnd)));
  }
  if (!acceptable) {
    if (seg.has(kRst)) {
      ++stats_[TcpStats::drop_rst_out_of_window];
      return;
    }
    if (c->state == TcpState::kSynReceived && seg.has(kSyn) && !seg.has(kAck) &&
        seg.seq == c->irs) {
      // The peer resent its SYN: our SYN-ACK was lost. Answer it again.
      send_syn(c);
      return;
    }
    ++stats_[TcpStats::drop_out_of_window];
    if (c->state == TcpState::kTimeWait && seg.has(kFin)) {
      c->timewait_at_ns = now_ns + 2 * config_.msl_ms * 1'000'000;  // restart 2*MSL
    }
    // A zero window still takes the peer's ACKs (RFC 9293 3.10.7.4: "special allowance").
    if (wnd == 0 && seg.seq == c->rcv_nxt && seg.has(kAck) && !seg.has(kSyn) &&
        c->state != TcpState::kSynReceived) {
      if (!process_ack(c, seg)) return;
      transmit(c);
    }
    // Data or FIN cannot be part of an ACK loop (only pure ACKs can), and its sender needs the
    // ACK (spurious retransmissions in a lossy bulk transfer, a FIN resent in TIME-WAIT): the
    // RFC 5961 budget is for the rest, as Linux's tcp_oow_rate_limited does.
    if (seg_len > 0 && !seg.has(kSyn)) {
      // Data wholly below RCV.NXT is a duplicate (RFC 2883 4.1.1: a lost ACK, or a spurious
      // resend): its ACK reports it.
      if (!seg.payload.empty() && seq_lt(seg.seq, c->rcv_nxt)) {
        note_dsack(c, seg.seq,
                   seq_min(seg.seq + static_cast<uint32_t>(seg.payload.size()), c->rcv_nxt));
      }
      send_ack(c);
    } else {
      send_challenge_ack(c);
    }
    return;
  }

  // RFC 7323 4.3: remember the peer's timestamp for echoing and PAWS.
  if (c->ts_ok && seg.options.has_timestamps && seq_ge(seg.options.ts_val, c->ts_recent) &&
      seq_le(seg.seq, c->last_ack_sent)) {
    c->ts_recent = seg.options.ts_val;
  }
  c->keepalive_sent = 0;
  if (config_.keepalive_idle_ms > 0 && c->keepalive_at_ns != 0) {
    c->keepalive_at_ns = now_ns + config_.keepalive_idle_ms * 1'000'000;
  }

  // Step 2: RST (RFC 5961 3.2: exact match resets, in-window gets a challenge ACK).
  if (seg.has(kRst)) {
    if (seg.seq != c->rcv_nxt) {
      ++stats_[TcpStats::challenge_acks];
      send_challenge_ack(c);
      return;
    }
    if (c->state == TcpState::kTimeWait) {
      // RFC 1337: a RST must not cut TIME-WAIT short (a late duplicate could then be taken
      // into a new incarnation; here, it would also turn a clean close into a reset).
      ++stats_[TcpStats::rst_in_time_wait];
      return;
    }
    ++stats_[TcpStats::rst_received];
    if (c->state == TcpState::kSynReceived && c->passive) {
      free_connection(c);  // back to LISTEN: the listener still stands
      return;
    }
    abort(
        c,
        c->state == TcpState::kSynReceived ? TcpCloseReason::kRefused : TcpCloseReason::kPeerReset,
        false);
    return;
  }

  // Step 4: SYN in a synchronized state (RFC 5961 4: challenge ACK).
  if (seg.has(kSyn)) {
    if (c->state == TcpState::kSynReceived && c->passive) {
      ++stats_[TcpStats::syn_in_syn_received];
      free_connection(c);
      return;
    }
    ++stats_[TcpStats::challenge_acks];
    send_challenge_ack(c);
    return;
  }

  // Step 5: ACK.
  if (!seg.has(kAck)) {
    ++stats_[TcpStats::drop_no_ack];
    return;
  }
  if (c->state == TcpState::kSynReceived) {
    if (!(seq_gt(seg.ack, c->snd_una) && seq_le(seg.ack, c->snd_max))) {
      ++stats_[TcpStats::rst_bad_ack_syn_received];
      send_reset_for(c->tuple.local, c->tuple.remote, seg);
      return;
    }
    Listener* l = c->listener;
    if (c->passive && l != nullptr && !l->accepting &&
        l->backlog.size() >= config_.accept_backlog) {
      ++stats_[TcpStats::drop_accept_backlog_full];  // stay half-open; SYN-ACK is resent
      return;
    }
    c->snd_wnd = static_cast<uint32_t>(seg.window) << c->snd_wscale;
    c->snd_wl1 = seg.seq;
    c->snd_wl2 = seg.ack;
    enter_established(c);
    if (c->passive) {
      c->in_syn_queue = false;
      --l->syn_count;
      --stats_[TcpStats::syn_queue_length];
      if (l->accepting) {
        c->listener = nullptr;
        c->app_open = true;
        push_event(Event::kAccepted, c);
      } else {
        c->in_backlog = true;
        l->backlog.push_back(c->id());
      }
    } else {
      push_event(Event::kConnected, c);
    }
  }
  if (!process_ack(c, seg)) return;

  // Steps 7 and 8: text and FIN.
  std::span<const uint8_t> data = seg.payload;
  uint32_t seq = seg.seq;
  bool fin = seg.has(kFin);
  if (c->state == TcpState::kEstablished || c->state == TcpState::kFinWait1 ||
      c->state == TcpState::kFinWait2) {
    process_data(c, seg, seq, data, fin);
  } else if (!data.empty() || fin) {
    // CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer's FIN came already.
    if (c->state == TcpState::kTimeWait && fin) {
      c->timewait_at_ns = now_ns + 2 * config_.msl_ms * 1'000'000;
    }
    ++stats_[TcpStats::drop_data_after_fin];
    c->ack_now = true;
  }
  if (!c->live) return;
  transmit(c);
  if (c->ack_now) send_ack(c);
}

// Step 5 for synchronized states. False if the segment is finished (dropped or the connection
// is gone).
bool TcpEngine::process_ack(Connection* c, const Segment& seg) {
  const uint32_t ack = seg.ack;
  if (seq_gt(ack, c->snd_max)) {
    ++stats_[TcpStats::drop_ack_too_new];
    send_challenge_ack(c);
    return false;
  }
  if (seq_lt(ack, c->snd_una - c->max_snd_wnd)) {
    ++stats_[TcpStats::drop_ack_too_old];
    send_challenge_ack(c);
    return false;
  }
  const uint32_t new_wnd = static_cast<uint32_t>(seg.window) << c->snd_wscale;
  if (seq_gt(ack, c->snd_una)) {
    uint32_t acked = ack - c->snd_una;
    // RTT: timestamps (RFC 7323 4.1) or one timed segment (Karn).
    if (c->ts_ok && seg.options.has_timestamps && seg.options.ts_ecr != 0) {
      uint32_t sample = now_ms() + c->ts_offset - seg.options.ts_ecr;
      if (sample < 600'000) update_rtt(c, sample);
    } else if (c->timing && seq_ge(ack, c->timed_seq)) {
      c->timing = false;
      update_rtt(c, now_ms() - c->timed_at_ms);
    }
    // Drop acknowledged bytes from the send ring.
    const uint32_t data_end = c->sbuf_seq + c->sbuf_len;
    const uint32_t upto = seq_min(ack, data_end);
    if (seq_gt(upto, c->sbuf_seq)) {
      uint32_t n = upto - c->sbuf_seq;
      c->sbuf_head = (c->sbuf_head + n) % c->sbuf_cap;
      c->sbuf_len -= n;
      c->sbuf_seq = upto;
    }
    c->snd_una = ack;
    if (seq_lt(c->snd_nxt, c->snd_una)) c->snd_nxt = c->snd_una;
    c->backoff = 0;
    c->retransmits = 0;
    if (c->sack_ok) {
      scoreboard_trim(c, true);
      if (seq_lt(c->high_rxt, ack)) c->high_rxt = ack;
    }
    const uint32_t newly_sacked = process_sack(c, seg);
    (void)newly_sacked;
    // Everything sent is acknowledged and nothing waits: the ring goes back to the pool.
    if (c->sbuf_len == 0) release_send_buffer(c);
    // Congestion control.
    if (c->in_recovery && c->sack_ok) {
      // RFC 6675: cwnd stays at ssthresh while pipe governs what is sent; a full ACK ends it.
      if (seq_ge(ack, c->recover)) {
        c->cwnd = c->ssthresh;
        c->in_recovery = false;
        ++stats_[TcpStats::recovery_exits];
      } else {
        ++stats_[TcpStats::recovery_partial_acks];
        // A peer that agreed to SACK but never sent a block: resend the next hole as NewReno
        // would (RFC 6582). Once blocks came, an empty scoreboard means nothing is known
        // lost (what follows the hole may still be in flight): the RTO covers the rest.
        if (!c->sack_seen) sack_retransmit_next(c, true);
        start_rto(c);
      }
    } else if (c->in_recovery) {
      if (seq_ge(ack, c->recover)) {
        // Full ACK (RFC 6582 3.2 step 3): deflate.
        c->cwnd = std::min(c->ssthresh, std::max(c->snd_max - c->snd_una, c->eff_mss) + c->eff_mss);
        c->in_recovery = false;
        ++stats_[TcpStats::recovery_exits];
      } else {
        // Partial ACK: retransmit the next hole, deflate by what was acked, add one segment.
        ++stats_[TcpStats::recovery_partial_acks];
        retransmit_first(c);
        c->cwnd = (c->cwnd > acked ? c->cwnd - acked : 0) + (acked >= c->eff_mss ? c->eff_mss : 0);
        c->cwnd = std::max(c->cwnd, c->eff_mss);
        start_rto(c);
      }
    } else if (c->cwnd < c->ssthresh) {
      c->cwnd += std::min(acked, c->eff_mss);  // slow start (RFC 5681 3.1, ABC L=1)
    } else if (config_.congestion_control == CongestionControl::kCubic) {
      c->cwnd =
          cubic_on_ack(c->cubic, c->cwnd, acked, c->eff_mss, clock_.now_ns() / 1000, c->srtt_us);
    } else {
      c->cwnd += std::max<uint32_t>(
          1, static_cast<uint32_t>(uint64_t{c->eff_mss} * c->eff_mss / std::max(c->cwnd, 1u)));
    }
    c->dupacks = 0;
    if (c->snd_una == c->snd_max) {
      // Nothing in flight: no retransmission timer (the persist timer shares it: keep that).
      if (!c->persist) c->rto_at_ns = 0;
    } else if (!c->in_recovery || seq_ge(ack, c->recover)) {
      start_rto(c);
    }
    if (c->above_low_water && c->sbuf_len <= config_.send_low_water_bytes && c->app_open) {
      c->above_low_water = false;
      push_event(Event::kWritable, c);
    }
  } else if (const uint32_t newly_sacked = ack == c->snd_una ? process_sack(c, seg) : 0;
             ack == c->snd_una && c->snd_max != c->snd_una &&
             ((seg.payload.empty() && !seg.has(kFin) && new_wnd == c->snd_wnd) ||
              newly_sacked > 0)) {
    // Duplicate ACK (RFC 5681 2; RFC 6675 2: or any ACK that SACKs new data).
    ++stats_[TcpStats::dup_acks];
    ++c->dupacks;
    if (c->sack_ok && !c->in_recovery && seq_gt(ack, c->recover) &&
        (c->dupacks >= 3 || seq_gt(sack_lost_end(c), c->snd_una))) {
      // RFC 6675 5 (4): enter recovery, retransmit the first hole at once, then let pipe
      // decide (transmit() runs NextSeg while cwnd - pipe >= 1 SMSS).
      ++stats_[TcpStats::fast_retransmits];
      ++stats_[TcpStats::sack_recoveries];
      const uint32_t flight = c->snd_max - c->snd_una;
      c->ssthresh = ssthresh_after_congestion(c, flight);
      c->cwnd = c->ssthresh;
      c->recover = c->snd_max;
      c->in_recovery = true;
      c->timing = false;
      // HighRxt survives from an earlier recovery that a cumulative ACK ended: what it covers
      // was sent again then and is still in flight (resending it would double it).
      c->high_rxt = seq_max(c->high_rxt, c->snd_una);
      sack_retransmit_next(c, true);
      start_rto(c);
    } else if (c->sack_ok) {
      // In recovery: transmit() (called after every ACK) sends by pipe; no inflation.
    } else if (c->dupacks == 3 && !c->in_recovery && seq_gt(ack, c->recover)) {
      ++stats_[TcpStats::fast_retransmits];
      const uint32_t flight = c->snd_max - c->snd_una;
      c->ssthresh = ssthresh_after_congestion(c, flight);
      c->recover = c->snd_max;
      c->in_recovery = true;
      c->timing = false;
      retransmit_first(c);
      c->cwnd = c->ssthresh + 3 * c->eff_mss;
    } else if (c->dupacks > 3 && c->in_recovery) {
      c->cwnd += c->eff_mss;
    }
  }
  // Send window update (RFC 9293 3.10.7.4 step 5).
  if (seq_lt(c->snd_wl1, seg.seq) || (c->snd_wl1 == seg.seq && seq_le(c->snd_wl2, ack))) {
    c->snd_wnd = new_wnd;
    c->snd_wl1 = seg.seq;
    c->snd_wl2 = ack;
    c->max_snd_wnd = std::max(c->max_snd_wnd, new_wnd);
    if (new_wnd > 0 && c->persist) {
      c->persist = false;
      c->rto_at_ns = 0;
      c->backoff = 0;
    }
  }
  // State changes on our FIN being acknowledged.
  if (c->fin_acked()) {
    switch (c->state) {
      case TcpState::kFinWait1:
        c->state = TcpState::kFinWait2;
        if (config_.fin_wait2_timeout_ms > 0) {
          c->finwait2_at_ns = clock_.now_ns() + config_.fin_wait2_timeout_ms * 1'000'000;
        }
        break;
      case TcpState::kClosing: enter_time_wait(c); break;
      case TcpState::kLastAck:
        c->state = TcpState::kClosed;
        c->rto_at_ns = c->delack_at_ns = c->keepalive_at_ns = 0;
        finish_normally(c);
        maybe_free(c);
        return false;
      default: break;
    }
  }
  return c->live;
}

void TcpEngine::process_data(Connection* c, const Segment& seg, uint32_t seq,
                             std::span<const uint8_t> data, bool fin) {
  (void)seg;
  // Trim what we have already (RFC 2883: the part below RCV.NXT is reported as a D-SACK).
  bool dsack = false;
  if (seq_lt(seq, c->rcv_nxt)) {
    uint32_t skip = c->rcv_nxt - seq;
    if (!data.empty()) {
      dsack = note_dsack(c, seq, seq + std::min(skip, static_cast<uint32_t>(data.size())));
    }
    if (skip > data.size()) {
      // Only the FIN (or nothing) may be new.
      if (!(fin && seq + static_cast<uint32_t>(data.size()) == c->rcv_nxt)) fin = false;
      if (!fin || c->fin_received) {
        ++stats_[TcpStats::data_duplicate];
        c->ack_now = true;
        return;
      }
      data = {};
    } else {
      data = data.subspan(skip);
    }
    seq = c->rcv_nxt;
    if (data.empty() && !fin) {
      ++stats_[TcpStats::data_duplicate];
      c->ack_now = true;
      return;
    }
  }
  // Trim to the window; a FIN beyond it is not ours yet.
  const uint32_t wnd = c->rcv_wnd();
  const uint32_t offset = seq - c->rcv_nxt;
  if (offset + data.size() > wnd) {
    ++stats_[TcpStats::data_trimmed];
    data = data.subspan(0, wnd > offset ? wnd - offset : 0);
    fin = false;
  }
  if (c->fin_received) return;
  const uint32_t end = seq + static_cast<uint32_t>(data.size());
  // RFC 2883 4.2: bytes inside a range already held out of order were received twice; a
  // D-SACK carries one contiguous block, so the lowest such part is reported.
  if (!dsack && !data.empty()) {
    for (const auto& r : c->ooo) {
      if (seq_ge(r.first, end)) break;
      const uint32_t lo = seq_max(seq, r.first), hi = seq_min(end, r.second);
      if (seq_lt(lo, hi)) {
        note_dsack(c, lo, hi);
        break;
      }
    }
  }
  // Grows the ring (by size class, within the window) to take `bytes` at `off` past the
  // in-order edge and writes them there. False when the pool refuses: the segment is dropped
  // as if it had been lost (counted), and our ACK tells the peer what to send again.
  auto write_at = [&](uint32_t off, std::span<const uint8_t> bytes) {
    const uint32_t need = c->rbuf_ready + off + static_cast<uint32_t>(bytes.size());
    if (!grow_ring(&c->rbuf, &c->rbuf_cap, &c->rbuf_head, need, config_.recv_buffer_bytes)) {
      ++stats_[TcpStats::drop_no_recv_buffer];
      c->ack_now = true;
      return false;
    }
    const uint32_t cap = c->rbuf_cap;
    uint32_t pos = (c->rbuf_head + c->rbuf_ready + off) % cap;
    size_t first = std::min<size_t>(bytes.size(), cap - pos);
    std::memcpy(c->rbuf + pos, bytes.data(), first);
    if (bytes.size() > first) std::memcpy(c->rbuf, bytes.data() + first, bytes.size() - first);
    return true;
  };
  if (!data.empty()) {
    // Out of order past the interval limit: dropped below, before any ring is grown for it.
    if (seq != c->rcv_nxt) {
      auto pos = c->ooo.begin();
      while (pos != c->ooo.end() && seq_lt(pos->second, seq)) ++pos;
      auto last = pos;
      while (last != c->ooo.end() && seq_le(last->first, end)) ++last;
      if (pos == last && c->ooo.size() >= config_.reassembly_intervals) {
        ++stats_[TcpStats::drop_ooo_full];
        c->ack_now = true;
        return;
      }
    }
    if (!write_at(offset, data)) return;
  }
  if (fin) {
    c->fin_pending = true;
    c->fin_pending_seq = end;
  }
  if (seq == c->rcv_nxt) {
    if (!data.empty()) {
      uint32_t advance = static_cast<uint32_t>(data.size());
      // Absorb held ranges that now touch the in-order edge.
      uint32_t new_nxt = c->rcv_nxt + advance;
      bool filled_hole = false;
      while (!c->ooo.empty() && seq_le(c->ooo.front().first, new_nxt)) {
        if (seq_gt(c->ooo.front().second, new_nxt)) new_nxt = c->ooo.front().second;
        c->ooo.erase(c->ooo.begin());
        filled_hole = true;
      }
      c->rbuf_ready += new_nxt - c->rcv_nxt;
      c->rcv_nxt = new_nxt;
      if (c->app_open) push_event(Event::kReadable, c);
      ++c->unacked_segments;
      // RFC 5681 4.2: ACK at once when a segment fills all or part of a hole (held data
      // still ahead: the peer's SACK recovery waits for it); else every second segment.
      if (filled_hole || !c->ooo.empty() || !config_.delayed_ack || c->unacked_segments >= 2) {
        c->ack_now = true;
      } else if (c->delack_at_ns == 0) {
        c->delack_at_ns = clock_.now_ns() + config_.delayed_ack_ms * 1'000'000;
      }
    }
  } else if (!data.empty()) {
    // Out of order: hold it in place, record the range, ACK at once (a duplicate ACK).
    c->ack_now = true;
    auto& v = c->ooo;
    auto pos = v.begin();
    while (pos != v.end() && seq_lt(pos->second, seq)) ++pos;
    uint32_t s = seq, e = end;
    auto last = pos;
    while (last != v.end() && seq_le(last->first, e)) {
      s = seq_min(s, last->first);
      e = seq_max(e, last->second);
      ++last;
    }
    ++stats_[TcpStats::ooo_segments];
    pos = v.erase(pos, last);
    v.insert(pos, {s, e});
    // Newest first; older entries that now fall in the same range are skipped when sending.
    const uint8_t keep = std::min<uint8_t>(c->sack_recent_count, kMaxSackBlocks - 1);
    std::memmove(c->sack_recent + 1, c->sack_recent, keep * sizeof(uint32_t));
    c->sack_recent[0] = seq;
    c->sack_recent_count = keep + 1;
  }
  if (c->fin_pending && c->fin_pending_seq == c->rcv_nxt) process_fin(c);
}

void TcpEngine::process_fin(Connection* c) {
  c->fin_pending = false;
  c->fin_received = true;
  c->rcv_nxt += 1;
  c->ack_now = true;
  if (c->app_open) push_event(Event::kReadable, c);
  switch (c->state) {
    case TcpState::kSynReceived:
    case TcpState::kEstablished: c->state = TcpState::kCloseWait; break;
    case TcpState::kFinWait1:
      if (c->fin_acked()) {
        enter_time_wait(c);
      } else {
        c->state = TcpState::kClosing;
      }
      break;
    case TcpState::kFinWait2: enter_time_wait(c); break;
    default: break;
  }
}

void TcpEngine::enter_time_wait(Connection* c) {
  ++stats_[TcpStats::time_wait_entered];
  ++stats_[TcpStats::time_wait_blocks];
  c->state = TcpState::kTimeWait;
  c->rto_at_ns = c->keepalive_at_ns = 0;
  c->persist = false;
  c->timewait_at_ns = clock_.now_ns() + 2 * config_.msl_ms * 1'000'000;
  // Both FINs are done: only undelivered bytes (an application not reading) keep a ring.
  release_send_buffer(c);
  release_recv_buffer(c);
  finish_normally(c);
}

// ---------------------------------------------------------------- the TIME-WAIT table
//
// A block in TIME-WAIT that the application let go of (on_closed queued) becomes a 56-byte
// entry and the block, its timer and rings are freed. The entry answers the segments TIME-WAIT
// answers exactly as the block would (synced_input's steps for that state, below), keeps
// 2*MSL from the block's entry into TIME-WAIT, and ends in expire_time_wait() (one wheel timer
// for the oldest entry of the FIFO), or early when the table is full.

bool TcpEngine::compact_time_wait(Connection* c) {
  if (!c->live || c->state != TcpState::kTimeWait || c->app_open) return false;
  // What an entry cannot hold stays in the block: an IPv6 tuple, or (not expected: both FINs
  // are done and the application read everything) bytes still held, unacknowledged or an ACK
  // of the peer's FIN never built.
  if (!TimeWaitTable::holds(c->tuple) || c->rbuf_ready != 0 || !c->ooo.empty() ||
      c->sbuf_len != 0 || c->snd_una != c->snd_max || c->last_ack_sent != c->rcv_nxt) {
    return false;
  }
  if (time_wait_.max_entries() == 0) {
    ++stats_[TcpStats::time_wait_overflow];  // no TIME-WAIT at all: the tuple is free now
    free_connection(c);
    return true;
  }
  if (time_wait_timer_ == timer::kInvalidTimerId) {
    time_wait_timer_ =
        wheel_.alloc(&TcpEngine::on_time_wait_timer, reinterpret_cast<uint64_t>(this));
    if (time_wait_timer_ == timer::kInvalidTimerId) {
      ++stats_[TcpStats::timer_alloc_failed];  // the block keeps TIME-WAIT with its own timer
      return false;
    }
  }
  bool evicted = false;
  const uint32_t h = time_wait_.insert(c->tuple, c->timewait_at_ns, &evicted);
  if (evicted) ++stats_[TcpStats::time_wait_overflow];
  TimeWaitEntry& e = time_wait_.at(h);
  e.snd_nxt = c->snd_max;
  e.rcv_nxt = c->rcv_nxt;
  e.max_snd_wnd = c->max_snd_wnd;
  e.ts_recent = c->ts_recent;
  e.ts_offset = c->ts_offset;
  e.rcv_wscale = c->rcv_wscale & 0xf;
  e.snd_wscale = c->snd_wscale & 0xf;
  e.ts_ok = c->ts_ok;
  e.sack_ok = c->sack_ok;
  free_connection(c);
  time_wait_gauge();
  arm_time_wait_timer();
  return true;
}

uint32_t TcpEngine::time_wait_find(const FourTuple& tuple) {
  const uint32_t h = time_wait_.find(tuple);
  if (h == TimeWaitTable::kNone || time_wait_.at(h).expiry_ns() > clock_.now_ns()) return h;
  // 2*MSL is over but the table's timer has not come round to it yet (a wheel fires up to a
  // tick late, and an entry that came in late sits behind younger ones): it ends now.
  ++stats_[TcpStats::time_wait_expired];
  time_wait_.erase(h);
  time_wait_gauge();
  return TimeWaitTable::kNone;
}

bool TcpEngine::time_wait_info(const FourTuple& tuple, ConnectionInfo* out) const {
  const uint32_t h = time_wait_.find(tuple);
  if (h == TimeWaitTable::kNone || time_wait_.at(h).expiry_ns() <= clock_.now_ns()) return false;
  const TimeWaitEntry& e = time_wait_.at(h);
  *out = ConnectionInfo{};
  out->state = TcpState::kTimeWait;
  out->snd_una = out->snd_nxt = e.snd_nxt;
  out->rcv_nxt = e.rcv_nxt;
  out->rcv_wnd = config_.recv_buffer_bytes;
  out->snd_wscale = e.snd_wscale;
  out->rcv_wscale = e.rcv_wscale;
  out->timestamps = e.ts_ok;
  out->sack = e.sack_ok;
  return true;
}

// synced_input() and process_ack() for a connection in TIME-WAIT, step by step, with what the
// state implies: nothing undelivered (the window is recv_buffer_bytes), nothing in flight
// (SND.UNA = SND.NXT = SND.MAX), the last ACK sent at RCV.NXT, no out-of-order data.
void TcpEngine::time_wait_input(uint32_t h, const FourTuple& tuple, const Segment& seg) {
  TimeWaitEntry& e = time_wait_.at(h);
  const uint64_t now_ns = clock_.now_ns();
  const uint64_t two_msl_ns = 2 * config_.msl_ms * 1'000'000;
  // RFC 6191 (and RFC 9293 3.10.7.4's TIME-WAIT note): a new SYN whose timestamp, or without
  // timestamps whose ISN, is above the old incarnation's makes way for a new passive open.
  if (seg.has(kSyn) && !seg.has(kAck)) {
    const bool newer = e.ts_ok && seg.options.has_timestamps
                           ? seq_gt(seg.options.ts_val, e.ts_recent)
                           : seq_gt(seg.seq, e.rcv_nxt);
    Listener* l = newer ? find_listener(tuple.local, tuple.local_port) : nullptr;
    if (l != nullptr) {
      ++stats_[TcpStats::time_wait_reused];
      time_wait_.erase(h);
      time_wait_gauge();
      listen_input(l, tuple, seg);
      return;
    }
  }
  // RFC 7323 5.3: PAWS before the sequence check.
  if (e.ts_ok && seg.options.has_timestamps && !seg.has(kRst) &&
      seq_lt(seg.options.ts_val, e.ts_recent)) {
    ++stats_[TcpStats::drop_paws];
    time_wait_ack(h, true);
    return;
  }
  // Step 1: sequence number acceptable? The window is never 0 here (recv_buffer_bytes >= mss).
  const uint32_t seg_len = seg.seg_len();
  const uint32_t wnd = config_.recv_buffer_bytes;
  const auto in_window = [&](uint32_t seq) {
    return seq_ge(seq, e.rcv_nxt) && seq_lt(seq, e.rcv_nxt + wnd);
  };
  const bool acceptable =
      seg_len == 0 ? in_window(seg.seq) : in_window(seg.seq) || in_window(seg.seq + seg_len - 1);
  if (!acceptable) {
    if (seg.has(kRst)) {
      ++stats_[TcpStats::drop_rst_out_of_window];
      return;
    }
    ++stats_[TcpStats::drop_out_of_window];
    // The peer resent its FIN (our ACK of it was lost): ACK again and restart 2*MSL.
    if (seg.has(kFin)) time_wait_.restart(h, now_ns + two_msl_ns);
    if (seg_len > 0 && !seg.has(kSyn)) {
      // Data or FIN is not an ACK loop: ACKed outside the RFC 5961 budget, a duplicate's data
      // reported as a D-SACK (RFC 2883 4.1.1).
      if (e.sack_ok && !seg.payload.empty() && seq_lt(seg.seq, e.rcv_nxt)) {
        time_wait_ack(h, false, seg.seq,
                      seq_min(seg.seq + static_cast<uint32_t>(seg.payload.size()), e.rcv_nxt));
      } else {
        time_wait_ack(h, false);
      }
    } else {
      time_wait_ack(h, true);
    }
    return;
  }
  // RFC 7323 4.3 (the last ACK sent was at RCV.NXT).
  if (e.ts_ok && seg.options.has_timestamps && seq_ge(seg.options.ts_val, e.ts_recent) &&
      seq_le(seg.seq, e.rcv_nxt)) {
    e.ts_recent = seg.options.ts_val;
  }
  // Step 2: RST. RFC 1337: an exact one must not cut TIME-WAIT short; others get the RFC 5961
  // challenge ACK.
  if (seg.has(kRst)) {
    if (seg.seq != e.rcv_nxt) {
      ++stats_[TcpStats::challenge_acks];
      time_wait_ack(h, true);
      return;
    }
    ++stats_[TcpStats::rst_in_time_wait];
    return;
  }
  // Step 4: SYN (not a newer incarnation, or no listener): RFC 5961 4 challenge ACK.
  if (seg.has(kSyn)) {
    ++stats_[TcpStats::challenge_acks];
    time_wait_ack(h, true);
    return;
  }
  // Step 5: ACK (process_ack with nothing outstanding).
  if (!seg.has(kAck)) {
    ++stats_[TcpStats::drop_no_ack];
    return;
  }
  if (seq_gt(seg.ack, e.snd_nxt)) {
    ++stats_[TcpStats::drop_ack_too_new];
    time_wait_ack(h, true);
    return;
  }
  if (seq_lt(seg.ack, e.snd_nxt - e.max_snd_wnd)) {
    ++stats_[TcpStats::drop_ack_too_old];
    time_wait_ack(h, true);
    return;
  }
  if (seg.ack == e.snd_nxt && e.sack_ok) {
    // Nothing is outstanding: no block can be news, each is counted as process_sack would.
    if (seg.options.sack_malformed) ++stats_[TcpStats::sack_blocks_invalid];
    for (uint8_t i = 0; i < seg.options.sack_count; ++i) {
      ++stats_[classify_sack_block(seg, i, e.snd_nxt, e.snd_nxt) == SackBlockKind::kOld
                   ? TcpStats::sack_dsack_ignored
                   : TcpStats::sack_blocks_invalid];
    }
  }
  // The send window update (RFC 9293 3.10.7.4 step 5) matters here only for the largest window
  // seen, the bound of step 5's too-old test: an acceptable segment lies past the peer's FIN,
  // so past SND.WL1 (only a reordered ACK below an earlier one could differ).
  e.max_snd_wnd = std::max(e.max_snd_wnd, static_cast<uint32_t>(seg.window) << e.snd_wscale);
  // Steps 7 and 8: the peer's FIN came already; a FIN again restarts 2*MSL.
  if (!seg.payload.empty() || seg.has(kFin)) {
    if (seg.has(kFin)) time_wait_.restart(h, now_ns + two_msl_ns);
    ++stats_[TcpStats::drop_data_after_fin];
    time_wait_ack(h, false);
  }
}

// send_ack() (or send_challenge_ack()) for an entry: what fill_common would put in it.
void TcpEngine::time_wait_ack(uint32_t h, bool challenge, uint32_t dsack_left,
                              uint32_t dsack_right) {
  if (challenge && !rate_allow(&challenge_budget_, config_.challenge_ack_limit_per_s)) {
    ++stats_[TcpStats::challenge_acks_rate_limited];
    return;
  }
  const TimeWaitEntry& e = time_wait_.at(h);
  SegmentSpec s;
  s.src_port = e.local_port;
  s.dst_port = e.remote_port;
  s.seq = e.snd_nxt;
  s.ack = e.rcv_nxt;
  s.flags = kAck;
  s.window =
      static_cast<uint16_t>(std::min<uint32_t>(config_.recv_buffer_bytes >> e.rcv_wscale, 65535));
  if (e.ts_ok) {
    s.timestamps = true;
    s.ts_val = now_ms() + e.ts_offset;
    s.ts_ecr = e.ts_recent;
  }
  if (dsack_left != dsack_right) {
    s.sack[0] = {dsack_left, dsack_right};
    s.sack_count = 1;
    ++stats_[TcpStats::dsack_sent];
    ++stats_[TcpStats::sack_blocks_sent];
  }
  ++stats_[TcpStats::acks_sent];
  const FourTuple t = e.tuple();
  emit(t.local, t.remote, s, {});
}

void TcpEngine::on_time_wait_timer(timer::TimerWheel&, timer::TimerId, uint64_t arg) {
  reinterpret_cast<TcpEngine*>(arg)->expire_time_wait();
}

// The oldest entries whose 2*MSL is over. One that was restarted (a FIN again) moved to the
// young end then; one that entered late (its application read the FIN late) may sit behind a
// younger one and ends when found (time_wait_find) or when it is the oldest.
void TcpEngine::expire_time_wait() {
  const uint64_t now = clock_.now_ns();
  for (uint32_t h = time_wait_.oldest();
       h != TimeWaitTable::kNone && time_wait_.at(h).expiry_ns() <= now; h = time_wait_.oldest()) {
    ++stats_[TcpStats::time_wait_expired];
    time_wait_.erase(h);
  }
  time_wait_gauge();
  arm_time_wait_timer();
}

void TcpEngine::arm_time_wait_timer() {
  if (time_wait_timer_ == timer::kInvalidTimerId) return;
  const uint32_t h = time_wait_.oldest();
  if (h == TimeWaitTable::kNone) {
    wheel_.cancel(time_wait_timer_);
    return;
  }
  const uint64_t at = time_wait_.at(h).expiry_ns();
  if (!wheel_.armed(time_wait_timer_) || wheel_.expiry_ns(time_wait_timer_) != at) {
    wheel_.schedule(time_wait_timer_, at);
  }
}

void TcpEngine::update_rtt(Connection* c, uint64_t rtt_ms) {
  ++stats_[TcpStats::rtt_samples];
  const uint64_t r = rtt_ms * 1000;
  if (!c->rtt_valid) {
    c->srtt_us = static_cast<uint32_t>(r);
    c->rttvar_us = static_cast<uint32_t>(r / 2);
    c->rtt_valid = true;
  } else {
    const uint64_t diff = c->srtt_us > r ? c->srtt_us - r : r - c->srtt_us;
    c->rttvar_us = static_cast<uint32_t>((3 * uint64_t{c->rttvar_us} + diff) / 4);
    c->srtt_us = static_cast<uint32_t>((7 * uint64_t{c->srtt_us} + r) / 8);
  }
  // RTO = SRTT + max(G, 4 * RTTVAR), G the 1 ms clock granularity (RFC 6298 2.3).
  uint64_t rto_us = uint64_t{c->srtt_us} + std::max<uint64_t>(1000, 4 * uint64_t{c->rttvar_us});
  c->rto_ms = static_cast<uint32_t>(
      std::clamp<uint64_t>((rto_us + 999) / 1000, config_.min_rto_ms, config_.max_rto_ms));
}

// ---------------------------------------------------------------- output

uint16_t TcpEngine::window_field(Connection* c, bool syn) {
  uint32_t wnd = c->rcv_wnd();
  if (syn) {
    c->last_adv_wnd = std::min<uint32_t>(wnd, 65535);
    return static_cast<uint16_t>(c->last_adv_wnd);
  }
  uint32_t field = std::min<uint32_t>(wnd >> c->rcv_wscale, 65535);
  c->last_adv_wnd = field << c->rcv_wscale;
  return static_cast<uint16_t>(field);
}

void TcpEngine::fill_common(Connection* c, SegmentSpec* s, uint32_t payload_len) {
  s->src_port = c->tuple.local_port;
  s->dst_port = c->tuple.remote_port;
  s->ack = c->rcv_nxt;
  s->window = window_field(c, (s->flags & kSyn) != 0);
  if (c->ts_ok) {
    s->timestamps = true;
    s->ts_val = now_ms() + c->ts_offset;
    s->ts_ecr = c->ts_recent;
  }
  if (s->flags & kAck) {
    const bool sack_wanted =
        c->sack_ok && (!c->ooo.empty() || c->dsack_pending) && !(s->flags & kSyn);
    if (sack_wanted) fill_sack(c, s, payload_len);
    c->last_ack_sent = c->rcv_nxt;
    c->unacked_segments = 0;
    c->delack_at_ns = 0;
    // A full-sized data segment has no room for SACK blocks: an owed ACK then still goes out
    // as a pure ACK that carries them (the peer's recovery depends on them).
    c->ack_now = c->ack_now && sack_wanted && s->sack_count == 0;
  }
}

bool TcpEngine::note_dsack(Connection* c, uint32_t left, uint32_t right) {
  if (!c->sack_ok || !seq_lt(left, right)) return false;
  c->dsack_pending = true;
  c->dsack_left = left;
  c->dsack_right = right;
  c->ack_now = true;
  return true;
}

// RFC 2018 4: the first block holds the most recently received out-of-order segment, then the
// other recently reported ranges, then the rest (highest first), as many as fit beside the
// timestamps and, on a data segment, within the MSS.
void TcpEngine::fill_sack(Connection* c, SegmentSpec* s, uint32_t payload_len) {
  uint32_t max_blocks = s->timestamps ? 3 : 4;
  if (payload_len > 0) {
    const uint32_t room = c->eff_mss > payload_len ? c->eff_mss - payload_len : 0;
    max_blocks = std::min(max_blocks, room >= 12 ? (room - 4) / 8 : 0u);
  }
  uint8_t n = 0, first_regular = 0;
  auto add = [&](const std::pair<uint32_t, uint32_t>& r) {
    for (uint8_t i = first_regular; i < n; ++i) {
      if (s->sack[i].left == r.first) return;
    }
    s->sack[n++] = {r.first, r.second};
  };
  if (c->dsack_pending && max_blocks > 0) {
    // RFC 2883 4: the D-SACK first, reported once; if it lies inside a held range, that range
    // second (so the peer can tell it from a plain SACK), then the usual blocks.
    s->sack[n++] = {c->dsack_left, c->dsack_right};
    first_regular = 1;
    c->dsack_pending = false;
    ++stats_[TcpStats::dsack_sent];
    for (const auto& r : c->ooo) {
      if (seq_le(r.first, c->dsack_left) && seq_ge(r.second, c->dsack_right)) {
        if (n < max_blocks) add(r);
        break;
      }
    }
  }
  for (uint8_t k = 0; k < c->sack_recent_count && n < max_blocks; ++k) {
    const uint32_t seq = c->sack_recent[k];
    for (const auto& r : c->ooo) {
      if (seq_ge(seq, r.first) && seq_lt(seq, r.second)) {
        add(r);
        break;
      }
    }
  }
  for (auto it = c->ooo.rbegin(); it != c->ooo.rend() && n < max_blocks; ++it) add(*it);
  s->sack_count = n;
  stats_[TcpStats::sack_blocks_sent] += n;
}

void TcpEngine::send_syn(Connection* c) {
  SegmentSpec s;
  s.seq = c->iss;
  const bool synack = c->state == TcpState::kSynReceived;
  s.flags = kSyn | (synack ? kAck : 0);
  s.mss = true;
  s.mss_value = config_.mss;
  // A SYN-ACK carries an option only if the SYN did (RFC 7323 1.3).
  if (synack) {
    s.wscale = c->rcv_wscale != 0 || (config_.window_scaling && c->snd_wscale != 0);
    s.wscale = config_.window_scaling && (c->rcv_wscale != 0 || c->snd_wscale != 0);
    s.wscale_value = c->rcv_wscale;
    if (c->ts_ok) {
      s.timestamps = true;
    }
    s.sack_permitted = c->sack_ok;
  } else {
    s.wscale = config_.window_scaling;
    s.sack_permitted = config_.sack;
    s.wscale_value = config_.window_scale;
    s.timestamps = config_.timestamps;
  }
  fill_common(c, &s);
  if (!synack) {
    if (config_.timestamps) {
      s.timestamps = true;
      s.ts_val = now_ms() + c->ts_offset;
      s.ts_ecr = 0;
    }
    s.ack = 0;
  }
  c->snd_nxt = c->iss + 1;
  c->snd_max = seq_max(c->snd_max, c->iss + 1);
  emit(c->tuple.local, c->tuple.remote, s, {});
}

void TcpEngine::send_range(Connection* c, uint32_t seq, uint32_t len, bool fin) {
  SegmentSpec s;
  s.seq = seq;
  s.flags = kAck | (fin ? kFin : 0);
  const uint32_t data_end = c->sbuf_seq + c->sbuf_len;
  if (len > 0 && seq + len == data_end) s.flags |= kPsh;
  fill_common(c, &s, len);
  stats_[TcpStats::bytes_sent] += len;
  std::span<const uint8_t> a, b;
  if (len > 0) {
    const uint32_t cap = c->sbuf_cap;
    uint32_t pos = (c->sbuf_head + (seq - c->sbuf_seq)) % cap;
    uint32_t first = std::min(len, cap - pos);
    a = {c->sbuf + pos, first};
    if (len > first) b = {c->sbuf, len - first};
  }
  emit(c->tuple.local, c->tuple.remote, s, a, b);
}

// Resends the first unacknowledged segment: never past SND.MAX (bytes beyond it were not sent,
// and the peer's ACK of them would look like an ACK of unsent data).
void TcpEngine::retransmit_first(Connection* c) {
  const uint32_t data_end = c->sbuf_seq + c->sbuf_len;
  const uint32_t sent_end = seq_min(data_end, c->snd_max);
  const uint32_t len =
      std::min<uint32_t>(c->eff_mss, seq_gt(sent_end, c->snd_una) ? sent_end - c->snd_una : 0);
  const bool fin = c->fin_sent() && c->snd_una + len == c->fin_seq;
  if (len == 0 && !fin) return;
  ++stats_[TcpStats::segments_retransmitted];
  stats_[TcpStats::bytes_retransmitted] += len;
  send_range(c, c->snd_una, len, fin);
}

// ---------------------------------------------------------------- SACK (RFC 2018, 6675)

// Validates and records the segment's SACK blocks; returns the bytes newly SACKed. Blocks the
// engine cannot use are ignored and counted: a block is only information, never a command.
uint32_t TcpEngine::process_sack(Connection* c, const Segment& seg) {
  if (!c->sack_ok) return 0;
  if (seg.options.sack_malformed) ++stats_[TcpStats::sack_blocks_invalid];
  uint32_t newly = 0;
  for (uint8_t i = 0; i < seg.options.sack_count; ++i) {
    switch (classify_sack_block(seg, i, c->snd_una, c->snd_max)) {
      case SackBlockKind::kInvalid: ++stats_[TcpStats::sack_blocks_invalid]; break;
      case SackBlockKind::kOld: ++stats_[TcpStats::sack_dsack_ignored]; break;
      case SackBlockKind::kUsable:
        ++stats_[TcpStats::sack_blocks_received];
        c->sack_seen = true;
        newly += scoreboard_add(c, seg.options.sack[i].left, seg.options.sack[i].right);
        break;
    }
  }
  return newly;
}

// Merges [left, right) into the sorted scoreboard; returns how many bytes were new.
uint32_t TcpEngine::scoreboard_add(Connection* c, uint32_t left, uint32_t right) {
  auto& v = c->scoreboard;
  auto pos = v.begin();
  while (pos != v.end() && seq_lt(pos->second, left)) ++pos;
  uint32_t l = left, r = right, overlap = 0;
  auto last = pos;
  while (last != v.end() && seq_le(last->first, right)) {
    const uint32_t lo = seq_max(left, last->first), hi = seq_min(right, last->second);
    if (seq_lt(lo, hi)) overlap += hi - lo;
    l = seq_min(l, last->first);
    r = seq_max(r, last->second);
    ++last;
  }
  if (pos == last && v.size() >= config_.sack_scoreboard_ranges) {
    ++stats_[TcpStats::sack_scoreboard_full];
    return 0;
  }
  pos = v.erase(pos, last);
  v.insert(pos, {l, r});
  return (right - left) - overlap;
}

// After SND.UNA moved: forget what it covers. A cumulative ACK that stops exactly at the left
// edge of a SACKed range means the peer dropped that data (reneging, RFC 2018 8): the
// scoreboard is no longer trustworthy and is cleared, so the data is sent again.
void TcpEngine::scoreboard_trim(Connection* c, bool advanced) {
  auto& v = c->scoreboard;
  if (advanced && !v.empty() && v.front().first == c->snd_una) {
    ++stats_[TcpStats::sack_reneging];
    v.clear();
    return;
  }
  size_t drop = 0;
  while (drop < v.size() && seq_le(v[drop].second, c->snd_una)) ++drop;
  v.erase(v.begin(), v.begin() + static_cast<ptrdiff_t>(drop));
  if (!v.empty() && seq_lt(v.front().first, c->snd_una)) v.front().first = c->snd_una;
}

// RFC 6675 IsLost: an unSACKed byte is lost once DupThresh (3) SACKed ranges or more than
// 2 * SMSS SACKed bytes lie above it. Holes below the returned sequence are lost; none is if
// it equals SND.UNA.
uint32_t TcpEngine::sack_lost_end(const Connection* c) const {
  uint32_t bytes = 0, ranges = 0;
  for (auto it = c->scoreboard.rbegin(); it != c->scoreboard.rend(); ++it) {
    bytes += it->second - it->first;
    if (++ranges >= 3 || bytes > 2 * c->eff_mss) return it->first;
  }
  return c->snd_una;
}

// RFC 6675 SetPipe: over the holes in [SND.UNA, SND.MAX), one for each byte not deemed lost
// and one more for each byte retransmitted (below HighRxt).
uint32_t TcpEngine::sack_pipe(const Connection* c) const {
  const uint32_t lost_end = sack_lost_end(c);
  uint32_t pipe = 0, cursor = c->snd_una;
  auto hole = [&](uint32_t a, uint32_t b) {
    if (!seq_lt(a, b)) return;
    const uint32_t not_lost_from = seq_max(a, lost_end);
    if (seq_lt(not_lost_from, b)) pipe += b - not_lost_from;
    const uint32_t rxt_to = seq_min(b, c->high_rxt);
    if (seq_lt(a, rxt_to)) pipe += rxt_to - a;
  };
  for (const auto& r : c->scoreboard) {
    hole(cursor, r.first);
    cursor = seq_max(cursor, r.second);
  }
  hole(cursor, c->snd_max);
  return pipe;
}

uint32_t TcpEngine::sacked_below(const Connection* c, uint32_t seq) const {
  uint32_t n = 0;
  for (const auto& r : c->scoreboard) {
    if (!seq_lt(r.first, seq)) break;
    n += seq_min(r.second, seq) - r.first;
  }
  return n;
}

// RFC 6675 NextSeg rule 1: the first unSACKed byte at or above HighRxt that is deemed lost,
// sent again as one segment that ends at the hole's end. `unconditional` is step (4.3): the
// first retransmission on entering recovery does not wait for cwnd. Rules 3 and 4 (resending
// data not yet deemed lost) are left to the RTO: they would resend data that was not lost.
bool TcpEngine::sack_retransmit_next(Connection* c, bool unconditional) {
  if (!unconditional && sack_pipe(c) + c->eff_mss > c->cwnd) return false;
  // Step (4.3) resends only the segment at SND.UNA, and not if it was resent already.
  if (unconditional && seq_lt(c->snd_una, c->high_rxt)) return false;
  const uint32_t lost_end = unconditional ? c->snd_max : sack_lost_end(c);
  uint32_t cursor = c->snd_una;
  uint32_t start = 0, end = 0;
  bool found = false;
  auto consider = [&](uint32_t a, uint32_t b) {
    a = seq_max(a, c->high_rxt);
    b = seq_min(b, unconditional ? b : lost_end);
    if (!found && seq_lt(a, b)) {
      start = a;
      end = b;
      found = true;
    }
  };
  for (const auto& r : c->scoreboard) {
    if (found) break;
    consider(cursor, r.first);
    cursor = seq_max(cursor, r.second);
  }
  if (!found) consider(cursor, c->snd_max);
  if (!found || (unconditional && start != c->snd_una)) return false;
  const uint32_t data_end = c->sbuf_seq + c->sbuf_len;
  const uint32_t data_to = seq_min(seq_min(end, data_end), start + c->eff_mss);
  const uint32_t len = seq_lt(start, data_to) ? data_to - start : 0;
  const bool fin = c->fin_sent() && start + len == c->fin_seq && seq_gt(end, c->fin_seq);
  if (len == 0 && !fin) return false;
  ++stats_[TcpStats::segments_retransmitted];
  ++stats_[TcpStats::sack_hole_retransmits];
  stats_[TcpStats::bytes_retransmitted] += len;
  send_range(c, start, len, fin);
  c->high_rxt = start + len + (fin ? 1 : 0);
  return true;
}

// RFC 5961 7: challenge ACKs and ACKs answering unacceptable segments share one engine-wide
// budget per second, so a blind attacker cannot turn the engine into an ACK amplifier.
void TcpEngine::send_challenge_ack(Connection* c) {
  if (!rate_allow(&challenge_budget_, config_.challenge_ack_limit_per_s)) {
    ++stats_[TcpStats::challenge_acks_rate_limited];
    return;
  }
  send_ack(c);
}

// A budget of `limit` per one-second window of the engine's clock (0: unlimited).
bool TcpEngine::rate_allow(RateBudget* b, uint32_t limit) {
  if (limit == 0) return true;
  const uint64_t second = clock_.now_ns() / 1'000'000'000;
  if (second != b->second) {
    b->second = second;
    b->used = 0;
  }
  if (b->used >= limit) return false;
  ++b->used;
  return true;
}

void TcpEngine::send_ack(Connection* c) {
  SegmentSpec s;
  // SND.MAX, not SND.NXT: after a go-back-N timeout SND.NXT trails what the peer has seen, and
  // a bare ACK left of its window would be unacceptable there (an ACK war, as BSD learned).
  s.seq = c->snd_max;
  s.flags = kAck;
  fill_common(c, &s);
  ++stats_[TcpStats::acks_sent];
  emit(c->tuple.local, c->tuple.remote, s, {});
}

void TcpEngine::send_probe(Connection* c) {
  SegmentSpec s;
  s.seq = c->snd_una - 1;
  s.flags = kAck;
  fill_common(c, &s);
  emit(c->tuple.local, c->tuple.remote, s, {});
}

void TcpEngine::send_reset_for(const IpAddr& local, const IpAddr& remote, const Segment& seg) {
  SegmentSpec s;
  s.src_port = seg.dst_port;
  s.dst_port = seg.src_port;
  if (seg.has(kAck)) {
    s.seq = seg.ack;
    s.flags = kRst;
  } else {
    s.seq = 0;
    s.ack = seg.seq + seg.seg_len();
    s.flags = kRst | kAck;
  }
  emit(local, remote, s, {});
}

void TcpEngine::emit(const IpAddr& src, const IpAddr& dst, const SegmentSpec& spec,
                     std::span<const uint8_t> payload, std::span<const uint8_t> payload2) {
  const size_t hlen = header_bytes(spec);
  const size_t plen = payload.size() + payload2.size();
  if (!payload2.empty()) {
    // Join a wrapped range behind the header's space so build_segment sees one payload.
    std::memcpy(scratch_.data() + hlen + payload.size(), payload2.data(), payload2.size());
    std::memmove(scratch_.data() + hlen, payload.data(), payload.size());
    payload = {scratch_.data() + hlen, plen};
  }
  size_t n = build_segment(src, dst, spec, payload, config_.checksum_offload_tx, scratch_);
  ++stats_[TcpStats::segments_out];
  if (!output_.send_segment(src, dst, {scratch_.data(), n})) ++stats_[TcpStats::output_no_room];
}

void TcpEngine::transmit(Connection* c) {
  switch (c->state) {
    case TcpState::kEstablished:
    case TcpState::kCloseWait:
    case TcpState::kFinWait1:
    case TcpState::kClosing:
    case TcpState::kLastAck: break;
    default: return;
  }
  const bool sack_recovery = c->in_recovery && c->sack_ok;
  if (sack_recovery) {
    // RFC 6675 NextSeg rule 1: holes deemed lost, while cwnd - pipe >= 1 SMSS.
    while (sack_retransmit_next(c, false)) {
    }
  }
  for (;;) {
    const uint32_t data_end = c->sbuf_seq + c->sbuf_len;
    // Resending after a timeout (SND.NXT < SND.MAX): skip what the peer SACKed.
    uint32_t sack_limit = UINT32_MAX;
    if (c->sack_ok && seq_lt(c->snd_nxt, c->snd_max)) {
      for (const auto& r : c->scoreboard) {
        if (seq_le(r.second, c->snd_nxt)) continue;
        if (seq_le(r.first, c->snd_nxt)) {
          c->snd_nxt = r.second;
          continue;
        }
        sack_limit = r.first - c->snd_nxt;
        break;
      }
    }
    const uint32_t avail =
        std::min(seq_lt(c->snd_nxt, data_end) ? data_end - c->snd_nxt : 0, sack_limit);
    const uint32_t flight = c->snd_nxt - c->snd_una;
    uint32_t usable;
    if (sack_recovery) {
      // Rule 2 (new data): the peer's window over everything outstanding, cwnd over pipe.
      const uint32_t pipe = sack_pipe(c);
      usable = std::min(c->snd_wnd > flight ? c->snd_wnd - flight : 0,
                        c->cwnd > pipe ? c->cwnd - pipe : 0);
    } else {
      // Bytes the peer SACKed left the network: they do not count against cwnd.
      const uint32_t in_net = c->sack_ok ? flight - sacked_below(c, c->snd_nxt) : flight;
      usable = std::min(c->snd_wnd > flight ? c->snd_wnd - flight : 0,
                        c->cwnd > in_net ? c->cwnd - in_net : 0);
    }
    const uint32_t len = std::min({avail, usable, c->eff_mss});
    const bool fin = c->fin_queued && len == avail && c->snd_nxt + len == c->fin_seq;
    if (len == 0 && !fin) {
      // Zero window with data waiting and nothing in flight: the persist timer probes.
      if (avail > 0 && flight == 0 && c->snd_wnd == 0 && (!c->persist || c->rto_at_ns == 0)) {
        c->persist = true;
        c->backoff = 0;
        c->rto_at_ns = clock_.now_ns() + uint64_t{c->rto_ms} * 1'000'000;
      }
      return;
    }
    // Sender SWS avoidance (RFC 9293 3.8.6.2.1): no small window-limited segment while data is
    // in flight; the next ACK opens more. (No Nagle: Herald's messages want low latency.)
    if (len < avail && len < c->eff_mss && flight > 0 && !fin) return;
    if (!c->timing && !c->ts_ok && c->snd_nxt == c->snd_max && len > 0) {
      c->timing = true;
      c->timed_seq = c->snd_nxt + len;
      c->timed_at_ms = now_ms();
    }
    if (seq_lt(c->snd_nxt, c->snd_max)) {
      ++stats_[TcpStats::segments_retransmitted];
      stats_[TcpStats::bytes_retransmitted] += std::min(len, c->snd_max - c->snd_nxt);
    }
    send_range(c, c->snd_nxt, len, fin);
    c->snd_nxt += len + (fin ? 1 : 0);
    c->snd_max = seq_max(c->snd_max, c->snd_nxt);
    if (c->persist) {
      c->persist = false;
      c->rto_at_ns = 0;
    }
    if (c->rto_at_ns == 0) start_rto(c);
  }
}

void TcpEngine::start_rto(Connection* c) {
  uint64_t rto = std::min<uint64_t>(uint64_t{c->rto_ms} << std::min<uint32_t>(c->backoff, 20),
                                    config_.max_rto_ms);
  c->rto_at_ns = clock_.now_ns() + rto * 1'000'000;
}

void TcpEngine::arm_timer(Connection* c) {
  if (!c->live) return;
  uint64_t at = UINT64_MAX;
  for (uint64_t d :
       {c->rto_at_ns, c->delack_at_ns, c->keepalive_at_ns, c->timewait_at_ns, c->finwait2_at_ns}) {
    if (d != 0) at = std::min(at, d);
  }
  if (at == UINT64_MAX) {
    wheel_.cancel(c->timer);
  } else if (!wheel_.armed(c->timer) || wheel_.expiry_ns(c->timer) != at) {
    wheel_.schedule(c->timer, at);
  }
}

void TcpEngine::on_timer(timer::TimerWheel&, timer::TimerId, uint64_t arg) {
  Connection* c = reinterpret_cast<Connection*>(arg);
  c->engine->handle_timer(c);
  c->engine->poll();
}

void TcpEngine::handle_timer(Connection* c) {
  if (!c->live) return;
  const uint64_t now = clock_.now_ns();
  if (c->timewait_at_ns != 0 && c->timewait_at_ns <= now) {
    ++stats_[TcpStats::time_wait_expired];
    --stats_[TcpStats::time_wait_blocks];
    c->timewait_at_ns = 0;
    c->state = TcpState::kClosed;
    if (c->app_open) {
      // The application never drained the data before the FIN: it ends now, normally.
      c->app_open = false;
      push_event(Event::kClosed, c, TcpCloseReason::kNormal);
    }
    free_connection(c);
    return;
  }
  if (c->finwait2_at_ns != 0 && c->finwait2_at_ns <= now) {
    c->finwait2_at_ns = 0;
    if (c->state == TcpState::kFinWait2) {
      // The peer went silent without its FIN: without this the block lives forever (RFC 9293
      // has no such timer; every stack adds one). RST so a live peer learns it is gone.
      ++stats_[TcpStats::aborted_fin_wait2];
      abort(c, TcpCloseReason::kFinWait2Timeout, true);
      return;
    }
  }
  if (c->delack_at_ns != 0 && c->delack_at_ns <= now) {
    ++stats_[TcpStats::delayed_acks];
    send_ack(c);
  }
  if (c->rto_at_ns != 0 && c->rto_at_ns <= now) {
    c->rto_at_ns = 0;
    if (c->persist) {
      ++stats_[TcpStats::window_probes];
      send_probe(c);
      ++c->backoff;
      uint64_t t = std::min<uint64_t>(uint64_t{c->rto_ms} << std::min<uint32_t>(c->backoff, 20),
                                      config_.persist_max_ms);
      c->rto_at_ns = now + t * 1'000'000;
    } else if (c->state == TcpState::kSynSent || c->state == TcpState::kSynReceived) {
      if (++c->retransmits > config_.max_syn_retransmits) {
        ++stats_[TcpStats::aborted_syn_timeout];
        if (c->state == TcpState::kSynReceived && c->passive) {
          free_connection(c);
        } else {
          abort(c, TcpCloseReason::kSynTimeout, false);
        }
        return;
      }
      ++stats_[TcpStats::rto_fired];
      ++stats_[TcpStats::segments_retransmitted];
      ++c->backoff;
      c->rto_ms = static_cast<uint32_t>(
          std::max<uint64_t>(c->rto_ms, config_.initial_rto_ms));  // RFC 6298 5.7
      send_syn(c);
      start_rto(c);
    } else if (c->snd_una != c->snd_max) {
      const uint32_t limit = c->fin_queued
                                 ? std::min(config_.max_retransmits, config_.max_orphan_retransmits)
                                 : config_.max_retransmits;
      if (++c->retransmits > limit) {
        ++stats_[TcpStats::aborted_retransmit];
        if (c->fin_queued) ++stats_[TcpStats::aborted_orphan_retransmit];
        abort(c, TcpCloseReason::kRetransmitTimeout, true);
        return;
      }
      ++stats_[TcpStats::rto_fired];
      // RFC 5681 3.1 eq. 4, RFC 6298 5.5-5.6, RFC 6582 recover after a timeout.
      const uint32_t flight = c->snd_max - c->snd_una;
      c->ssthresh = ssthresh_after_congestion(c, flight);
      c->cwnd = c->eff_mss;
      c->in_recovery = false;
      c->recover = c->snd_max;
      c->dupacks = 0;
      c->timing = false;
      ++c->backoff;
      c->snd_nxt = c->snd_una;  // go back N: resend from the first unacknowledged byte
      transmit(c);
      if (c->rto_at_ns == 0) start_rto(c);
    }
  }
  if (c->keepalive_at_ns != 0 && c->keepalive_at_ns <= now) {
    if (c->snd_una != c->snd_max || c->state != TcpState::kEstablished) {
      c->keepalive_at_ns = now + config_.keepalive_idle_ms * 1'000'000;  // not idle
    } else if (c->keepalive_sent >= config_.keepalive_probes) {
      ++stats_[TcpStats::aborted_keepalive];
      abort(c, TcpCloseReason::kKeepaliveTimeout, true);
      return;
    } else {
      ++stats_[TcpStats::keepalive_probes];
      ++c->keepalive_sent;
      send_probe(c);
      c->keepalive_at_ns = now + config_.keepalive_interval_ms * 1'000'000;
    }
  }
  arm_timer(c);
}

}  // namespace herald::net::tcp
