// ServerMsgId minting for one dataplane worker, laid out as schemas/wire.fbs documents:
//   hi = (unix_time_ms << 16) | node_id,   lo = (worker << 56) | sequence.
// Within one (node, worker) the pair (unix_time_ms, sequence) only grows.
#pragma once

#include <cstdint>

#include "schemas/wire_generated.h"

namespace herald::dataplane::routing {

inline constexpr uint64_t kMaxMessageIdUnixMs = (uint64_t{1} << 48) - 1;
inline constexpr uint64_t kMaxMessageIdSequence = (uint64_t{1} << 56) - 1;

// The four fields of a ServerMsgId.
struct MessageIdParts {
  uint64_t unix_ms = 0;  // 48 bits
  uint16_t node = 0;
  uint8_t worker = 0;
  uint64_t sequence = 0;  // 56 bits
};

// Packs `parts` (unix_ms and sequence must fit their widths: HERALD_CHECK).
wire::ServerMsgId make_message_id(const MessageIdParts& parts);
MessageIdParts split_message_id(const wire::ServerMsgId& id);

// wire.fbs ordering: by (hi, lo), which is time first.
inline bool message_id_less(const wire::ServerMsgId& a, const wire::ServerMsgId& b) {
  return a.hi() != b.hi() ? a.hi() < b.hi() : a.lo() < b.lo();
}
inline bool message_id_equal(const wire::ServerMsgId& a, const wire::ServerMsgId& b) {
  return a.hi() == b.hi() && a.lo() == b.lo();
}

struct MessageIdStats {
  uint64_t minted = 0;
  uint64_t clock_behind = 0;    // the wall clock was below the last issued time (it stepped back)
  uint64_t floor_raised = 0;    // the wall clock was at or below the control plane's floor
  uint64_t time_saturated = 0;  // the time would pass 48 bits; held at the maximum
};

// A minted id and the time in it (ServerAck.server_time_ms, Deliver.server_time_ms).
struct MintedId {
  wire::ServerMsgId id;
  uint64_t server_time_ms = 0;
};

// One per worker, used on the worker's thread only. The wall clock is an argument, so the
// caller chooses the source (the real clock, or a fake in tests and simulations).
class MessageIdMinter {
 public:
  MessageIdMinter(uint16_t node_id, uint8_t worker) : node_(node_id), worker_(worker) {}

  // ipc Hello.server_msg_time_floor_ms: the highest id time in the store. The sequence restarts
  // at 0 with the process, so an id at the floor's millisecond could equal one a previous
  // instance of this worker issued: every later id has a time strictly above the floor.
  // Raising it again (a control plane restart) never lowers anything.
  void raise_floor(uint64_t server_msg_time_floor_ms);

  // The next id: time = max(now, last issued time, floor + 1), sequence = previous + 1. When
  // the wall clock steps back the time stays at the last one issued, so ids keep growing.
  MintedId mint(uint64_t now_unix_ms);

  uint64_t last_unix_ms() const { return last_ms_; }
  uint64_t next_sequence() const { return sequence_; }
  const MessageIdStats& stats() const { return stats_; }

 private:
  uint16_t node_;
  uint8_t worker_;
  uint64_t min_ms_ = 0;   // floor + 1
  uint64_t last_ms_ = 0;  // time of the last id issued
  uint64_t sequence_ = 0;
  MessageIdStats stats_;
};

}  // namespace herald::dataplane::routing
