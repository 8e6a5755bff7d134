// The TCP engine's counters: one X-macro table of named drops and events, so each has a stable
// name (tcp.<name>) for the counters segment and a line of documentation.
#pragma once

#include <cstdint>

namespace herald::net::tcp {

#define HERALD_TCP_STATS(X)                                                                       \
  X(segments_in, "segments handed to input()")                                                    \
  X(segments_out, "segments handed to the output")                                                \
  X(drop_too_short, "drop: shorter than a TCP header")                                            \
  X(drop_bad_data_offset, "drop: data offset < 5 words or past the segment")                      \
  X(drop_bad_flags, "drop: SYN+FIN, SYN+RST or no control flag")                                  \
  X(drop_bad_options, "drop: malformed option")                                                   \
  X(drop_bad_checksum, "drop: checksum mismatch")                                                 \
  X(drop_bad_port, "drop: port 0")                                                                \
  X(drop_bad_address, "drop: broadcast/multicast/mismatched family addresses")                    \
  X(rst_closed_port, "RST sent: segment for no connection and no listener")                       \
  X(drop_rst_no_connection, "drop: RST for no connection")                                        \
  X(drop_listen_non_syn, "drop: neither SYN nor ACK nor RST to a listener")                       \
  X(rst_listen_ack, "RST sent: ACK to a listener")                                                \
  X(drop_syn_queue_full, "drop: SYN while the listener's SYN queue is full")                      \
  X(syn_cookies_sent, "SYN-ACK with a SYN cookie sent (SYN queue full; RFC 4987)")                \
  X(syn_cookies_accepted, "connection created from a valid SYN cookie ACK")                       \
  X(syn_cookies_rejected, "drop: ACK to a listener with a forged or expired cookie (RST)")        \
  X(drop_accept_backlog_full, "drop: SYN while established-but-unread backlog is full")           \
  X(drop_connection_limit, "drop: SYN at max_connections")                                        \
  X(drop_syn_sent_bad_ack, "RST sent: unacceptable ACK in SYN-SENT")                              \
  X(drop_syn_sent_no_syn, "drop: segment without SYN in SYN-SENT")                                \
  X(drop_paws, "drop: PAWS (timestamp older than TS.Recent)")                                     \
  X(drop_out_of_window, "drop: unacceptable sequence number (ACK sent)")                          \
  X(drop_rst_out_of_window, "drop: RST outside the window")                                       \
  X(challenge_acks, "challenge ACK due (RST in window not at RCV.NXT, or SYN; RFC 5961)")         \
  X(challenge_acks_rate_limited, "challenge/out-of-window ACK not sent: rate limit (5961 7)")     \
  X(rst_rate_limited, "RST for a closed port or an ACK to a listener not sent: rate limit")       \
  X(aborted_fin_wait2, "connection ended: FIN-WAIT-2 timeout (RST sent)")                         \
  X(time_wait_reused, "TIME-WAIT connection replaced by a new SYN (RFC 6191)")                    \
  X(rst_received, "RST accepted")                                                                 \
  X(rst_in_time_wait, "RST ignored in TIME-WAIT (RFC 1337)")                                      \
  X(syn_in_syn_received, "SYN in SYN-RECEIVED (passive: back to LISTEN)")                         \
  X(drop_no_ack, "drop: synchronized state, segment without ACK")                                 \
  X(rst_bad_ack_syn_received, "RST sent: unacceptable ACK in SYN-RECEIVED")                       \
  X(drop_ack_too_new, "drop: ACK of data not yet sent (ACK sent)")                                \
  X(drop_ack_too_old, "drop: ACK older than the send window allows (RFC 5961 5.2)")               \
  X(dup_acks, "duplicate ACK received")                                                           \
  X(data_trimmed, "segment trimmed to the receive window")                                        \
  X(data_duplicate, "segment carried only already-received data")                                 \
  X(ooo_segments, "out-of-order segment held for reassembly")                                     \
  X(drop_ooo_full, "drop: reassembly intervals exhausted")                                        \
  X(drop_syn_data, "data on a SYN ignored (the peer resends it)")                                 \
  X(drop_data_after_fin, "drop: data in a state that receives no more")                           \
  X(passive_opens, "connection created from a SYN")                                               \
  X(active_opens, "connect() started")                                                            \
  X(established, "connection reached ESTABLISHED")                                                \
  X(simultaneous_opens, "SYN received in SYN-SENT (simultaneous open)")                           \
  X(time_wait_entered, "connection entered TIME-WAIT")                                            \
  X(time_wait_expired, "TIME-WAIT ended after 2*MSL")                                             \
  X(rto_fired, "retransmission timeout")                                                          \
  X(segments_retransmitted, "segments sent again (timeout or fast retransmit)")                   \
  X(congestion_events, "window reduced: fast retransmit, SACK recovery or timeout")               \
  X(fast_retransmits, "fast retransmit on the third duplicate ACK")                               \
  X(recovery_partial_acks, "NewReno partial ACK (retransmit next hole)")                          \
  X(recovery_exits, "NewReno recovery ended (full ACK)")                                          \
  X(bytes_sent, "payload bytes sent (first transmissions and retransmissions)")                   \
  X(bytes_retransmitted, "payload bytes sent again (timeout, fast, partial ACK, SACK holes)")     \
  X(sack_blocks_sent, "SACK blocks sent on ACKs (RFC 2018)")                                      \
  X(dsack_sent, "D-SACK blocks sent: a duplicate reported once (RFC 2883)")                       \
  X(sack_blocks_received, "valid SACK blocks received")                                           \
  X(sack_blocks_invalid, "SACK block ignored: empty, outside SND.UNA..SND.MAX, malformed")        \
  X(sack_dsack_ignored, "D-SACK or stale block: at or below the cum. ACK, or inside the 2nd")     \
  X(sack_scoreboard_full, "SACK block ignored: scoreboard ranges exhausted")                      \
  X(sack_reneging, "peer reneged on SACKed data: scoreboard cleared")                             \
  X(sack_recoveries, "RFC 6675 loss recovery entered (SACK)")                                     \
  X(sack_hole_retransmits, "segments retransmitted from a SACK hole (RFC 6675 NextSeg)")          \
  X(delayed_acks, "ACK sent by the delayed-ACK timer")                                            \
  X(acks_sent, "pure ACK segments sent")                                                          \
  X(window_updates, "window update sent after the application read")                              \
  X(window_probes, "zero-window probe sent (persist timer)")                                      \
  X(keepalive_probes, "keepalive probe sent")                                                     \
  X(rtt_samples, "RTT samples taken")                                                             \
  X(aborted_retransmit, "connection aborted: max retransmissions")                                \
  X(aborted_orphan_retransmit, "of those, after the application closed (max_orphan_retransmits)") \
  X(aborted_keepalive, "connection aborted: keepalive unanswered")                                \
  X(aborted_syn_timeout, "connection aborted: SYN never answered")                                \
  X(refused, "connect() refused by RST")                                                          \
  X(reset_sent, "RST sent by abort or send-queue overflow")                                       \
  X(send_queue_full, "send() past the send buffer (connection reset)")                            \
  X(timer_alloc_failed, "no wheel timer: new connection refused, or TIME-WAIT kept in block")     \
  X(output_no_room, "segment not sent: output refused it")                                        \
  X(buffer_bytes_in_use, "gauge: send + receive ring bytes held by connections (the pool)")       \
  X(buffer_bytes_high_water, "gauge: the most ring bytes ever held at once")                      \
  X(buffer_bytes_cached, "gauge: freed ring bytes the pool keeps for reuse")                      \
  X(buffer_alloc_refused, "ring not grown: buffer_pool_bytes reached")                            \
  X(drop_no_recv_buffer, "drop: segment's data with no receive ring to hold it (pool full)")      \
  X(connection_blocks, "gauge: connection blocks in use, every state (half-open, TIME-WAIT)")     \
  X(time_wait_blocks, "gauge: TIME-WAIT kept in a block (app still holds it, or IPv6)")           \
  X(time_wait_entries, "gauge: connections in TIME-WAIT as table entries (no block)")             \
  X(time_wait_overflow, "TIME-WAIT entry ended early: max_time_wait reached (oldest goes)")       \
  X(syn_queue_length, "gauge: half-open passive opens in the listeners' SYN queues")              \
  X(block_bytes_held, "gauge: connection-block chunks held (emptied chunks are given back)")

struct TcpStats {
  enum Index : uint32_t {
#define HERALD_TCP_STAT_ENUM(name, doc) name,
    HERALD_TCP_STATS(HERALD_TCP_STAT_ENUM)
#undef HERALD_TCP_STAT_ENUM
        kCount
  };
  uint64_t values[kCount] = {};

  uint64_t& operator[](Index i) {
    return values[i];
  }
  uint64_t operator[](Index i) const {
    return values[i];
  }
  static const char* name(Index i);
  static const char* doc(Index i);
  // Levels rather than counts (they go down too): publish them as gauges, not deltas.
  static bool is_gauge(Index i) {
    return i == buffer_bytes_in_use || i == buffer_bytes_high_water || i == buffer_bytes_cached ||
           i == connection_blocks || i == time_wait_blocks || i == time_wait_entries ||
           i == syn_queue_length || i == block_bytes_held;
  }
};

}  // namespace herald::net::tcp
