// The TCP engine's TIME-WAIT table: a connection past both FINs kept as a 56-byte entry (what
// RFC 9293, 1337, 5961, 6191 and 7323 need to answer its segments) instead of its connection
// block, rings and wheel timer. Every entry lives 2*MSL from when it entered TIME-WAIT (or
// from the peer's last FIN), so one FIFO by that time orders them: expiry needs no timer per
// entry (the engine's one timer serves the oldest; see README "The TIME-WAIT table").
//
//   TimeWaitTable tw(max_entries, key0, key1);
//   uint32_t h = tw.insert(tuple, now + 2 * msl, &evicted);  // full: the oldest goes first
//   tw.find(tuple) == h; tw.restart(h, now + 2 * msl);       // a FIN again: youngest now
//   while (tw.oldest() != TimeWaitTable::kNone && tw.at(tw.oldest()).expiry_ns() <= now) ...
//
// IPv4 tuples only (holds()): an IPv6 one would need 24 more bytes in every entry; the engine
// keeps such a connection's block in TIME-WAIT instead. Not thread-safe: one per engine.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/net/tcp/types.h"

namespace herald::net::tcp {

// Fields are 4-byte words then bytes, so the entry has no padding (the expiry is two halves
// rather than a uint64_t that would align the whole entry to 8).
struct TimeWaitEntry {
  uint32_t local_addr = 0, remote_addr = 0;  // IpAddr::bytes[0..3], as stored
  uint16_t local_port = 0, remote_port = 0;
  uint32_t snd_nxt = 0;      // SND.NXT = SND.UNA = SND.MAX: our FIN is acknowledged
  uint32_t rcv_nxt = 0;      // past the peer's FIN
  uint32_t max_snd_wnd = 0;  // an ACK below SND.UNA - this is too old (RFC 5961 5.2)
  uint32_t ts_recent = 0;    // RFC 7323 TS.Recent: PAWS and the TSecr we echo
  uint32_t ts_offset = 0;    // our TSval is now_ms + ts_offset, as the connection's was
  uint32_t expiry_lo = 0, expiry_hi = 0;  // the clock's ns
  uint32_t older = 0, newer = 0;          // FIFO neighbours (handles; 0: none)
  uint32_t chain = 0;                     // next in the hash chain or the free list (0: end)
  uint8_t rcv_wscale : 4 = 0;             // our window shift (the window field we advertise)
  uint8_t snd_wscale : 4 = 0;             // the peer's (its windows widen max_snd_wnd)
  bool ts_ok : 1 = false;                 // timestamps in use (RFC 7323)
  bool sack_ok : 1 = false;               // SACK agreed: a duplicate's ACK carries a D-SACK
  bool used : 1 = false;

  uint64_t expiry_ns() const { return uint64_t{expiry_hi} << 32 | expiry_lo; }
  void set_expiry_ns(uint64_t ns) {
    expiry_lo = static_cast<uint32_t>(ns);
    expiry_hi = static_cast<uint32_t>(ns >> 32);
  }
  FourTuple tuple() const;
};

class TimeWaitTable {
 public:
  // Handles are slot + 1; 0 is none.
  static constexpr uint32_t kNone = 0;

  // Room for max_entries (above 2^28 taken as 2^28); the hash buckets (a power of two, at
  // least max_entries, 4 bytes each) are allocated now, entries in chunks as they are needed.
  // key0, key1: SipHash's key, so a peer cannot aim its tuples at one chain.
  TimeWaitTable(uint32_t max_entries, uint64_t key0, uint64_t key1);
  TimeWaitTable(const TimeWaitTable&) = delete;
  TimeWaitTable& operator=(const TimeWaitTable&) = delete;

  // Whether an entry can hold this tuple: IPv4 on both sides.
  static bool holds(const FourTuple& t);
  uint32_t find(const FourTuple& t) const;
  // A new entry for t (holds(t), not present, max_entries() > 0), youngest in the FIFO and
  // otherwise zeroed. When the table is full the oldest entry is erased first (*evicted).
  uint32_t insert(const FourTuple& t, uint64_t expiry_ns, bool* evicted);
  void erase(uint32_t handle);
  // A new expiry (at least every other entry's: now + 2*MSL): the entry becomes the youngest.
  void restart(uint32_t handle, uint64_t expiry_ns);
  TimeWaitEntry& at(uint32_t handle) { return slot(handle - 1); }
  const TimeWaitEntry& at(uint32_t handle) const { return slot(handle - 1); }
  uint32_t oldest() const { return oldest_; }
  uint32_t size() const { return size_; }
  uint32_t max_entries() const { return max_entries_; }
  // Erases everything and returns the entries' chunks to the allocator.
  void clear();
  // Chunks, buckets and the chunk index, bytes.
  uint64_t memory_bytes() const;

 private:
  static constexpr uint32_t kChunkShift = 8;  // 256 entries, 14 KiB
  static constexpr uint32_t kChunkSlots = 1u << kChunkShift;
  TimeWaitEntry& slot(uint32_t index) const {
    return chunks_[index >> kChunkShift][index & (kChunkSlots - 1)];
  }
  uint32_t bucket_of(uint32_t local_addr, uint32_t remote_addr, uint16_t local_port,
                     uint16_t remote_port) const;
  uint32_t bucket_of(const TimeWaitEntry& e) const {
    return bucket_of(e.local_addr, e.remote_addr, e.local_port, e.remote_port);
  }

  const uint32_t max_entries_;
  uint64_t key_[2];
  std::vector<std::unique_ptr<TimeWaitEntry[]>> chunks_;
  uint32_t slots_ = 0;  // slots handed out at least once (in use or on the free list)
  uint32_t free_ = 0;   // free list (handles through `chain`)
  std::vector<uint32_t> buckets_;
  uint32_t bucket_mask_ = 0;
  uint32_t size_ = 0;
  uint32_t oldest_ = 0, newest_ = 0;
};

}  // namespace herald::net::tcp
