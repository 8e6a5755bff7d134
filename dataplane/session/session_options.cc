// Session limits from the node config (session_options.h).
#include "dataplane/session/session_options.h"

namespace herald::dataplane {

SessionLimits session_limits_from_config(const config::Config& config) {
  const config::Limits& l = config.limits();
  SessionLimits s;
  s.max_frame_bytes = l.max_frame_bytes();
  s.frame_max_depth = l.frame_max_depth();
  s.frame_max_tables = l.frame_max_tables();
  s.max_body_bytes = l.max_body_bytes();
  s.max_group_members = l.max_group_members();
  s.max_linked_devices = l.max_linked_devices();
  s.max_unacked_messages = l.max_unacked_messages();
  s.max_ids_per_ack = l.max_ids_per_ack();
  s.max_presence_subscriptions = l.max_presence_subscriptions();
  s.idle_timeout_ms = l.idle_timeout_ms();
  s.handshake_timeout_ms = l.handshake_timeout_ms();
  s.send_queue_bytes_per_session = l.send_queue_bytes_per_session();
  return s;
}

SessionLayerOptions session_options_from_config(const config::Config& config) {
  SessionLayerOptions o;
  o.limits = session_limits_from_config(config);
  o.node_id = config.node().id();
  o.max_decode_buffers = config.dataplane().session_decode_buffers();
  o.park_idle_ms = config.tls().chat_park_idle_ms();
  return o;
}

}  // namespace herald::dataplane
