// Herald's TCP engine (RFC 9293 with RFC 7323, 6298, 5681, 6582, 6528, 5961's RST/SYN checks):
// one instance per lcore, shared-nothing, pure C++. Segments come in through input() from the
// IP layer and go out through TcpOutput; the application sees TransportEvents-shaped events
// (accepted, data, writable, closed with a reason). Time comes from an injectable Clock and the
// worker's TimerWheel, so the same code runs in virtual time in the simulation.
//
//   TcpEngine tcp(config, clock, wheel, output, events);
//   tcp.listen(IpAddr::v4(0x0a000001), 443);
//   ip_layer: tcp.input(src, dst, tcp_bytes, checksum_ok_by_offload);
//   loop:     wheel.advance(clock.now_ns()); tcp.poll();     // timers, then deferred events
//
// Not thread-safe: one engine, one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/net/tcp/buffer_pool.h"
#include "dataplane/net/tcp/cubic.h"
#include "dataplane/net/tcp/segment.h"
#include "dataplane/net/tcp/stats.h"
#include "dataplane/net/tcp/time_wait.h"
#include "dataplane/net/tcp/types.h"
#include "dataplane/transport/transport.h"
#include "platform/clock/clock.h"
#include "platform/timer/timer_wheel.h"

namespace herald::net::tcp {

using dataplane::CloseMode;
using dataplane::ConnectionId;
using dataplane::kNoConnection;
using dataplane::SendResult;

// RFC 9293 3.3.2.
#define HERALD_TCP_STATES(X)      \
  X(kClosed, "CLOSED")            \
  X(kListen, "LISTEN")            \
  X(kSynSent, "SYN-SENT")         \
  X(kSynReceived, "SYN-RECEIVED") \
  X(kEstablished, "ESTABLISHED")  \
  X(kFinWait1, "FIN-WAIT-1")      \
  X(kFinWait2, "FIN-WAIT-2")      \
  X(kCloseWait, "CLOSE-WAIT")     \
  X(kClosing, "CLOSING")          \
  X(kLastAck, "LAST-ACK")         \
  X(kTimeWait, "TIME-WAIT")

enum class TcpState : uint8_t {
#define HERALD_TCP_STATE_ENUM(name, text) name,
  HERALD_TCP_STATES(HERALD_TCP_STATE_ENUM)
#undef HERALD_TCP_STATE_ENUM
};
const char* tcp_state_name(TcpState state);

// Why a connection ended, finer than dataplane::CloseReason (to_transport_reason maps it).
#define HERALD_TCP_CLOSE_REASONS(X)                                                 \
  X(kNormal, "normal", "both FINs exchanged and acknowledged")                      \
  X(kPeerReset, "peer_reset", "the peer sent an acceptable RST")                    \
  X(kLocalAbort, "local_abort", "close(kAbort) by the application")                 \
  X(kRefused, "refused", "connect() answered by RST")                               \
  X(kSynTimeout, "syn_timeout", "connect() never answered")                         \
  X(kRetransmitTimeout, "retransmit_timeout", "max retransmissions without an ACK") \
  X(kKeepaliveTimeout, "keepalive_timeout", "keepalive probes unanswered")          \
  X(kSendQueueFull, "send_queue_full", "send() past the send buffer: reset")        \
  X(kShutdown, "shutdown", "the engine is stopping")                                \
  X(kFinWait2Timeout, "fin_wait2_timeout", "our FIN acked, the peer's never came")

enum class TcpCloseReason : uint8_t {
#define HERALD_TCP_CLOSE_ENUM(name, text, doc) name,
  HERALD_TCP_CLOSE_REASONS(HERALD_TCP_CLOSE_ENUM)
#undef HERALD_TCP_CLOSE_ENUM
      kCount
};
const char* tcp_close_reason_name(TcpCloseReason reason);
dataplane::CloseReason to_transport_reason(TcpCloseReason reason);

struct TcpConfig {
  uint16_t mss = 1460;                   // what we advertise (MTU 1500 - 40)
  bool window_scaling = true;            // offer RFC 7323 window scale
  uint8_t window_scale = 7;              // our shift when scaling is agreed (0..14)
  bool timestamps = true;                // offer RFC 7323 timestamps (RTTM + PAWS)
  bool sack = true;                      // offer SACK-permitted, send and use SACK (RFC 2018/6675)
  uint32_t sack_scoreboard_ranges = 32;  // SACKed ranges remembered per connection (sender)
  uint32_t challenge_ack_limit_per_s = 1000;  // RFC 5961 7, engine-wide (0: unlimited)
  uint32_t rst_limit_per_s = 1000;  // RSTs for closed ports and ACKs to listeners (0: unlimited)
  uint64_t fin_wait2_timeout_ms = 60'000;  // FIN-WAIT-2 without the peer's FIN (0: off)
  bool syn_cookies = true;                 // SYN queue full: answer with a SYN cookie (RFC 4987)
  uint64_t syn_cookie_key[2] = {0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL};  // cookie secret
  uint32_t send_buffer_bytes = 256 * 1024;  // unacked + unsent bytes per connection
  uint32_t send_low_water_bytes = 64 * 1024;
  uint32_t recv_buffer_bytes = 256 * 1024;  // in-order undelivered + out-of-order, per conn
  // Send and receive rings come from a per-engine pool by size class (2, 8, 32, 128 KiB, ...
  // up to the two limits above) and go back when empty. At this many bytes held (0: no
  // limit) a connection that needs more is refused: its segment is dropped (receive) or
  // send() resets it as send_queue_full.
  uint64_t buffer_pool_bytes = uint64_t{1} << 30;
  uint64_t buffer_cache_bytes = 4 << 20;  // freed rings kept for reuse instead of free()
  uint32_t reassembly_intervals = 16;     // out-of-order holes tracked per connection
  uint32_t max_connections = 10'000;      // blocks, every state (TIME-WAIT: mostly entries)
  uint32_t max_time_wait = 10'000;        // TIME-WAIT entries (README); full: oldest ends early
  uint32_t syn_queue = 128;               // SYN-RECEIVED per listener
  uint32_t accept_backlog = 128;          // established, not yet accepted, per listener
  uint64_t initial_rto_ms = 1000;         // RFC 6298 2.1
  uint64_t min_rto_ms = 1000;             // RFC 6298 2.4 (Linux uses 200)
  uint64_t max_rto_ms = 60'000;
  uint32_t max_retransmits = 12;  // data: then abort (kRetransmitTimeout)
  // Once the application has closed (its FIN queued), like Linux's tcp_orphan_retries: a
  // connection whose peer vanished (a session reaped by its idle timeout closes gracefully)
  // would otherwise hold its block and send buffer for max_retransmits RTOs (~7 minutes at the
  // defaults); 6 lets it go after about a minute (1 + 2 + ... + 32 s, then the abort).
  uint32_t max_orphan_retransmits = 6;
  uint32_t max_syn_retransmits = 5;  // SYN / SYN-ACK
  uint64_t msl_ms = 30'000;          // TIME-WAIT lasts 2*MSL
  bool delayed_ack = true;
  uint64_t delayed_ack_ms = 40;    // RFC 9293 3.8.6.3: < 500 ms
  uint64_t keepalive_idle_ms = 0;  // 0: off (RFC 9293 3.8.4: off by default)
  uint64_t keepalive_interval_ms = 75'000;
  uint32_t keepalive_probes = 9;
  uint64_t persist_max_ms = 60'000;
  uint32_t initial_cwnd_segments = 10;                                   // RFC 6928
  CongestionControl congestion_control = CongestionControl::kCubic;      // RFC 9438; or NewReno
  uint64_t isn_key[2] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL};  // RFC 6528 secret
  bool checksum_offload_tx = false;  // leave the pseudo-header sum for the NIC
  uint16_t ephemeral_port_min = 32768;
  uint16_t ephemeral_port_max = 60999;
};

// Where segments go: the IP layer. Returns false if it could not send (counted; TCP recovers).
class TcpOutput {
 public:
  virtual ~TcpOutput() = default;
  virtual bool send_segment(const IpAddr& src, const IpAddr& dst,
                            std::span<const uint8_t> segment) = 0;
};

// The application's events, shaped like dataplane::TransportEvents plus the two a general TCP
// needs (active open, half close). Delivered from input(), timer expiry and poll(); never from
// inside send(), close() or connect().
class TcpEvents {
 public:
  virtual ~TcpEvents() = default;
  virtual void on_accepted(ConnectionId id, const FourTuple& tuple) = 0;
  virtual void on_connected(ConnectionId id) = 0;
  virtual void on_data(ConnectionId id, std::span<const uint8_t> bytes) = 0;
  // The peer sent FIN after all its data: no more on_data. We may still send; close() ends.
  virtual void on_peer_closed(ConnectionId id) = 0;
  virtual void on_writable(ConnectionId id) = 0;
  virtual void on_closed(ConnectionId id, TcpCloseReason reason) = 0;
};

// A connection's state for tests and diagnostics.
struct ConnectionInfo {
  TcpState state = TcpState::kClosed;
  uint32_t snd_una = 0, snd_nxt = 0, snd_wnd = 0, rcv_nxt = 0, rcv_wnd = 0;
  uint32_t cwnd = 0, ssthresh = 0, mss = 0;
  uint8_t snd_wscale = 0, rcv_wscale = 0;
  bool timestamps = false;
  uint64_t rto_ms = 0;
  uint32_t retransmits = 0;
  bool in_recovery = false;
  bool sack = false;               // SACK agreed on the handshake
  uint32_t sacked_ranges = 0;      // scoreboard ranges held now (sender side)
  uint32_t sacked_bytes = 0;       // bytes above SND.UNA the peer SACKed
  uint32_t send_buffer_bytes = 0;  // ring held now (0 when nothing is unsent or unacked)
  uint32_t recv_buffer_bytes = 0;  // ring held now (0 when nothing is undelivered or held)
};

// Where an engine's memory goes (diagnostics and the memory test), bytes.
struct TcpMemory {
  uint64_t blocks_bytes = 0;          // block chunks held (live, free and TIME-WAIT blocks)
  uint64_t table_bytes = 0;           // the 4-tuple table, the chunk index and its bitmap
  uint64_t buffers_bytes = 0;         // send + receive rings held by connections
  uint64_t buffers_cached_bytes = 0;  // freed rings the pool keeps for reuse
  uint64_t ranges_bytes = 0;          // out-of-order and SACK scoreboard lists (capacity)
  uint64_t time_wait_bytes = 0;       // the TIME-WAIT table: entries allocated and its buckets
};

class TcpEngine {
 public:
  TcpEngine(const TcpConfig& config, clock::Clock clock, timer::TimerWheel& wheel,
            TcpOutput& output, TcpEvents& events);
  ~TcpEngine();
  TcpEngine(const TcpEngine&) = delete;
  TcpEngine& operator=(const TcpEngine&) = delete;

  // Passive open on addr:port (addr with family 0 bytes all zero = any address of that family).
  // False if already listening there.
  bool listen(const IpAddr& addr, uint16_t port);
  // Pauses (or resumes) on_accepted for a listener: handshakes complete into its accept
  // backlog (bounded by accept_backlog) and wait there.
  void set_accepting(uint16_t port, bool accepting);

  // Which ephemeral ports an active open may take (connect() with local_port 0): several
  // engines sharing a port's traffic by flow hash take only the ports whose connection hashes
  // to their own lcore. Null (the default): any free port.
  using LocalPortFilter = std::function<bool(const FourTuple&)>;
  void set_local_port_filter(LocalPortFilter filter) { local_port_filter_ = std::move(filter); }

  // Active open. local_port 0 picks an ephemeral port (a free one the filter accepts).
  // kNoConnection if the table is full or no such port is left.
  ConnectionId connect(const IpAddr& local, uint16_t local_port, const IpAddr& remote,
                       uint16_t remote_port);

  // dataplane::Transport's semantics: copied, in order; past the send buffer the connection is
  // reset (kSendQueueFull) and nothing is queued.
  SendResult send(ConnectionId id, std::span<const uint8_t> bytes);
  // Bytes send() takes now without overflowing.
  uint32_t send_space(ConnectionId id) const;
  uint32_t queued_bytes(ConnectionId id) const;
  void close(ConnectionId id, CloseMode mode);
  void set_reading(ConnectionId id, bool reading);

  // A segment from the IP layer: `bytes` is the TCP header and payload.
  void input(const IpAddr& src, const IpAddr& dst, std::span<const uint8_t> bytes,
             bool checksum_verified);
  // Delivers deferred events. Call after every batch (input and timers already call it).
  void poll();
  // Aborts every connection (on_closed kShutdown for each the application holds).
  void stop();

  uint32_t connections() const { return live_count_; }
  bool info(ConnectionId id, ConnectionInfo* out) const;
  const TcpStats& stats() const { return stats_; }
  TcpMemory memory() const;
  static size_t connection_block_bytes();
  static size_t time_wait_entry_bytes() { return sizeof(TimeWaitEntry); }
  // Connections in the TIME-WAIT table (their blocks are gone: info() no longer knows their
  // id). time_wait_info() describes one by its tuple (state kTimeWait), false if none.
  uint32_t time_wait_entries() const { return time_wait_.size(); }
  bool time_wait_info(const FourTuple& tuple, ConnectionInfo* out) const;
  const TcpConfig& config() const { return config_; }

  struct Connection;
  struct Listener;

 private:
  struct Event;

  static void on_timer(timer::TimerWheel& wheel, timer::TimerId id, uint64_t arg);
  void handle_timer(Connection* c);

  Connection* find(ConnectionId id) const;
  Listener* find_listener(const IpAddr& dst, uint16_t port) const;
  Connection* new_connection(const FourTuple& tuple);
  void free_connection(Connection* c);
  void maybe_free(Connection* c);
  uint32_t make_isn(const FourTuple& tuple) const;
  // SYN cookies (RFC 4987).
  uint32_t cookie_hash(const FourTuple& tuple, uint32_t peer_isn, uint32_t period,
                       uint32_t mss_index) const;
  void send_syn_cookie(const FourTuple& tuple, const Segment& syn);
  bool accept_syn_cookie(Listener* l, const FourTuple& tuple, const Segment& ack);
  uint32_t now_ms() const;

  void listen_input(Listener* l, const FourTuple& tuple, const Segment& seg);
  void syn_sent_input(Connection* c, const Segment& seg);
  void synced_input(Connection* c, const Segment& seg);
  bool process_ack(Connection* c, const Segment& seg);
  void process_data(Connection* c, const Segment& seg, uint32_t seq, std::span<const uint8_t> data,
                    bool fin);
  void process_fin(Connection* c);
  void update_rtt(Connection* c, uint64_t rtt_ms);
  void enter_established(Connection* c);
  // A congestion event with `flight` bytes outstanding: the new ssthresh (CUBIC or NewReno).
  uint32_t ssthresh_after_congestion(Connection* c, uint32_t flight);
  void enter_time_wait(Connection* c);
  // TIME-WAIT table: a block in TIME-WAIT the application let go of becomes an entry (false:
  // it stays a block); segments for an entry; its ACKs; expiry by the one table timer.
  bool compact_time_wait(Connection* c);
  uint32_t time_wait_find(const FourTuple& tuple);  // an expired entry found is erased now
  void time_wait_input(uint32_t handle, const FourTuple& tuple, const Segment& seg);
  void time_wait_ack(uint32_t handle, bool challenge, uint32_t dsack_left = 0,
                     uint32_t dsack_right = 0);
  static void on_time_wait_timer(timer::TimerWheel& wheel, timer::TimerId id, uint64_t arg);
  void expire_time_wait();
  void arm_time_wait_timer();
  void time_wait_gauge() { stats_[TcpStats::time_wait_entries] = time_wait_.size(); }
  void abort(Connection* c, TcpCloseReason reason, bool send_rst);
  void finish_normally(Connection* c);

  // Output.
  void transmit(Connection* c);
  void send_syn(Connection* c);
  void send_range(Connection* c, uint32_t seq, uint32_t len, bool fin);
  void send_ack(Connection* c);
  struct RateBudget {
    uint64_t second = UINT64_MAX;
    uint32_t used = 0;
  };
  bool rate_allow(RateBudget* budget, uint32_t limit);
  void send_challenge_ack(Connection* c);
  void retransmit_first(Connection* c);
  // SACK (RFC 2018, RFC 6675).
  uint32_t process_sack(Connection* c, const Segment& seg);
  uint32_t scoreboard_add(Connection* c, uint32_t left, uint32_t right);
  void scoreboard_trim(Connection* c, bool advanced);
  uint32_t sack_lost_end(const Connection* c) const;
  uint32_t sack_pipe(const Connection* c) const;
  uint32_t sacked_below(const Connection* c, uint32_t seq) const;
  bool sack_retransmit_next(Connection* c, bool unconditional);
  void fill_sack(Connection* c, SegmentSpec* spec, uint32_t payload_len);
  // RFC 2883: [left, right) arrived twice; the next ACK (sent at once) reports it. False
  // (nothing noted) without SACK or for an empty range.
  bool note_dsack(Connection* c, uint32_t left, uint32_t right);
  void send_probe(Connection* c);  // SEQ = SND.UNA - 1: the peer answers with an ACK
  void send_reset_for(const IpAddr& src, const IpAddr& dst, const Segment& seg);
  void emit(const IpAddr& src, const IpAddr& dst, const SegmentSpec& spec,
            std::span<const uint8_t> payload, std::span<const uint8_t> payload2 = {});
  void fill_common(Connection* c, SegmentSpec* spec, uint32_t payload_len = 0);
  uint16_t window_field(Connection* c, bool syn);
  void ack_now_or_later(Connection* c, bool now);
  void arm_timer(Connection* c);
  void start_rto(Connection* c);

  void push_event(uint8_t kind, Connection* c, TcpCloseReason reason = TcpCloseReason::kNormal);
  void deliver_readable(Connection* c);

  TcpConfig config_;
  clock::Clock clock_;
  timer::TimerWheel& wheel_;
  TcpOutput& output_;
  TcpEvents& events_;
  TcpStats stats_;

  // Send/receive rings (buffer_pool.h). grow_ring makes a ring hold at least `need` bytes,
  // moving its content; false (counted) when the pool refuses.
  bool grow_ring(uint8_t** buffer, uint32_t* cap, uint32_t* head, uint32_t need, uint32_t max);
  void release_send_buffer(Connection* c);  // when nothing is unsent or unacked
  void release_recv_buffer(Connection* c);  // when nothing is undelivered or held out of order
  void release_all(Connection* c);
  void update_pool_stats();
  BufferPool pool_;

  // Connection blocks in chunks of kChunkSlots: no allocation (and no malloc header) per
  // connection, and a block's address never changes while its chunk is held (its timer carries
  // it). A new block takes the lowest free slot of the lowest chunk with room, so after a mass
  // departure the survivors sit in the low chunks and the emptied ones go back to the allocator
  // (release_emptied_chunks, at the end of the outermost poll(): code that freed a block may
  // still read it until then). One emptied chunk is kept as a spare against churn at the edge.
  static constexpr uint32_t kChunkShift = 6;
  static constexpr uint32_t kChunkSlots = 1u << kChunkShift;
  struct Chunk {
    std::unique_ptr<Connection[]> blocks;  // null: released, every slot free
    uint64_t used = 0;                     // bit i: slot i holds a live block
    // While released: the highest generation its slots had, so an id of a block that lived
    // here never matches a block made here later.
    uint32_t last_generation = 0;
    bool listed = false;  // on emptied_chunks_
  };
  Connection* slot_at(uint32_t slot) const;  // a held chunk's slot
  uint32_t lowest_chunk_with_room();         // chunks_.size() when every chunk is full
  void mark_slot_free(uint32_t slot);
  void attach_blocks(uint32_t chunk);
  void release_emptied_chunks();
  void destroy_blocks(std::unique_ptr<Connection[]> blocks);  // gives back their timers
  uint64_t block_bytes_held() const;  // the held chunks' blocks, the spare included
  uint32_t slot_count() const { return static_cast<uint32_t>(chunks_.size()) << kChunkShift; }
  std::vector<Chunk> chunks_;
  std::vector<uint64_t> chunks_with_room_;      // bit k: chunk k has a free slot
  uint32_t room_hint_ = 0;                      // no word of chunks_with_room_ below has a bit
  std::vector<uint32_t> emptied_chunks_;        // chunks whose last block went, to release
  std::unique_ptr<Connection[]> spare_blocks_;  // one released chunk's blocks (timers kept)
  uint32_t held_chunks_ = 0;                    // chunks with blocks, the spare included
  uint32_t live_count_ = 0;
  // The 4-tuple table: open addressing with linear probing, allocated once at construction
  // for max_connections at most half full (no allocation per connection); an entry is a slot
  // index + 1, 0 is empty. Keyed SipHash: a peer cannot aim its tuples at one probe chain.
  std::vector<uint32_t> table_;
  uint32_t table_mask_ = 0;
  uint64_t table_key_[2] = {};
  uint32_t table_home(const FourTuple& tuple) const;
  Connection* table_find(const FourTuple& tuple) const;
  void table_insert(const FourTuple& tuple, uint32_t slot);
  void table_erase(const FourTuple& tuple);
  // TIME-WAIT entries, and one wheel timer for the oldest (allocated with the first entry).
  TimeWaitTable time_wait_;
  timer::TimerId time_wait_timer_ = timer::kInvalidTimerId;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<Event> events_queue_;
  size_t events_head_ = 0;
  bool dispatching_ = false;
  uint16_t next_ephemeral_;
  LocalPortFilter local_port_filter_;
  RateBudget challenge_budget_;
  RateBudget rst_budget_;
  bool cookies_sent_ = false;    // a SYN cookie was ever sent
  uint64_t last_cookie_ns_ = 0;  // when the last one was
  std::vector<uint8_t> scratch_;
};

}  // namespace herald::net::tcp
