// A worker's sessions over a plaintext channel (session_layer.h).
#include "dataplane/session/session_layer.h"

#include "platform/assert/assert.h"

namespace herald::dataplane {

SessionLayer::SessionLayer(PlaintextChannel& channel, Router& router, auth::TokenVerifier& verifier,
                           timer::TimerWheel& wheel, const clock::Clock& clock,
                           const SessionLayerOptions& options)
    : env_(channel, router, verifier, wheel, clock, options),
      slots_(std::make_unique<Session[]>(options.max_sessions)),
      timers_(std::make_unique<timer::TimerId[]>(options.max_sessions)),
      free_list_(std::make_unique<uint32_t[]>(options.max_sessions)),
      max_sessions_(options.max_sessions),
      map_(options.max_sessions) {
  HERALD_CHECK(codec::limits_valid(options.limits.decoder_limits()),
               "session limits outside the codec's range");
  for (uint32_t i = 0; i < max_sessions_; ++i) {
    timers_[i] = wheel.alloc(&SessionLayer::on_timer, reinterpret_cast<uint64_t>(&slots_[i]));
    HERALD_CHECK(timers_[i] != timer::kInvalidTimerId,
                 "timer wheel too small for the session layer");
  }
  // Free slots are taken from the back: slot 0 first.
  for (uint32_t i = 0; i < max_sessions_; ++i) free_list_[i] = max_sessions_ - 1 - i;
  free_count_ = max_sessions_;
}

SessionLayer::~SessionLayer() {
  for (uint32_t i = 0; i < max_sessions_; ++i) env_.wheel.release(timers_[i]);
}

void SessionLayer::set_limits(const SessionLimits& limits) {
  if (!codec::limits_valid(limits.decoder_limits())) return;  // the config loader checked them
  SessionLimits next = limits;
  next.send_queue_bytes_per_session = env_.options.limits.send_queue_bytes_per_session;
  env_.options.limits = next;
  env_.decode_buffers.resize(codec::FrameDecoder::storage_bytes(next.decoder_limits()));
}

Session* SessionLayer::session(ConnectionId id) {
  const uint32_t index = map_.find(id);
  return index == ConnectionMap::kNotFound ? nullptr : &slots_[index];
}

void SessionLayer::on_open(ConnectionId id, const PeerAddress& /*peer*/) {
  env_.stats.count(SessionEvent::kOpened);
  if (free_count_ == 0) {
    env_.stats.count(SessionEvent::kRejectedFull);
    env_.channel.close(id, CloseMode::kAbort);
    return;
  }
  const uint32_t index = free_list_[free_count_ - 1];
  if (!map_.insert(id, index)) {
    env_.stats.count(SessionEvent::kRejectedFull);
    env_.channel.close(id, CloseMode::kAbort);
    return;
  }
  --free_count_;
  slots_[index].open(env_, id, timers_[index]);
}

void SessionLayer::on_plaintext(ConnectionId id, std::span<const uint8_t> bytes) {
  if (Session* s = session(id); s != nullptr) s->on_plaintext(bytes);
}

void SessionLayer::on_writable(ConnectionId id) {
  if (Session* s = session(id); s != nullptr) s->on_writable();
}

void SessionLayer::on_closed(ConnectionId id, CloseReason /*reason*/) {
  const uint32_t index = map_.find(id);
  if (index == ConnectionMap::kNotFound) return;  // refused at open
  slots_[index].on_closed();
  (void)map_.erase(id);
  free_list_[free_count_++] = index;
}

void SessionLayer::on_timer(timer::TimerWheel& /*wheel*/, timer::TimerId /*id*/, uint64_t arg) {
  reinterpret_cast<Session*>(arg)->on_timer();
}

}  // namespace herald::dataplane
