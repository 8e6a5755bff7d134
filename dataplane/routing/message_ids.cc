// ServerMsgId minting (see message_ids.h).
#include "dataplane/routing/message_ids.h"

#include <algorithm>

#include "platform/assert/assert.h"

namespace herald::dataplane::routing {

wire::ServerMsgId make_message_id(const MessageIdParts& parts) {
  HERALD_CHECK(parts.unix_ms <= kMaxMessageIdUnixMs, "message id time over 48 bits");
  HERALD_CHECK(parts.sequence <= kMaxMessageIdSequence, "message id sequence over 56 bits");
  return wire::ServerMsgId(parts.unix_ms << 16 | parts.node,
                           uint64_t{parts.worker} << 56 | parts.sequence);
}

MessageIdParts split_message_id(const wire::ServerMsgId& id) {
  MessageIdParts parts;
  parts.unix_ms = id.hi() >> 16;
  parts.node = static_cast<uint16_t>(id.hi() & 0xffff);
  parts.worker = static_cast<uint8_t>(id.lo() >> 56);
  parts.sequence = id.lo() & kMaxMessageIdSequence;
  return parts;
}

void MessageIdMinter::raise_floor(uint64_t server_msg_time_floor_ms) {
  const uint64_t min_ms = std::min(server_msg_time_floor_ms, kMaxMessageIdUnixMs - 1) + 1;
  min_ms_ = std::max(min_ms_, min_ms);
}

MintedId MessageIdMinter::mint(uint64_t now_unix_ms) {
  uint64_t ms = now_unix_ms;
  if (ms < last_ms_) {
    ++stats_.clock_behind;
    ms = last_ms_;
  }
  if (ms < min_ms_) {
    ++stats_.floor_raised;
    ms = min_ms_;
  }
  if (ms > kMaxMessageIdUnixMs) {
    // Year 10889: unreachable with a sane clock; a broken one must not break uniqueness, which
    // the sequence keeps on its own.
    ++stats_.time_saturated;
    ms = kMaxMessageIdUnixMs;
  }
  // 2^56 ids at ten million a second last 228 years: a wrap is a bug, not a load.
  HERALD_CHECK(sequence_ <= kMaxMessageIdSequence, "message id sequence exhausted");
  last_ms_ = ms;
  ++stats_.minted;
  const MessageIdParts parts{ms, node_, worker_, sequence_++};
  return MintedId{make_message_id(parts), ms};
}

}  // namespace herald::dataplane::routing
