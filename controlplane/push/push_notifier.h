// The push notifier: the dataplane's PushHints (a device is offline and has a new stored
// message) batched per interval and POSTed as JSON to the operator's push gateway, which talks
// to APNs or FCM:
//
//   POST <push.webhook_url>  {"hints":[{"account":"<id>","device":N,"platform":"apns",
//                                       "token":"...","count":N}]}
//
// Hints for one device within an interval become one entry with their count. A device without
// a push token (or no longer active) is counted and skipped. One batch is in flight at a time;
// a failed POST (transport error, timeout, 408, 429, 5xx) is retried with exponential backoff up
// to max_attempts, then the batch is dropped and counted; other 4xx drop it at once. Nothing
// here blocks the control plane's loop, and the queue is bounded (max_queued_hints devices).
// Single-threaded: the control plane's loop.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/http/client.h"
#include "controlplane/push/push_tokens.h"
#include "platform/auth/account_id.h"
#include "platform/uring/event_loop.h"

namespace herald::push {

struct PushNotifierOptions {
  std::string url;  // empty: off (hints are counted as disabled)
  std::string ca_path;
  uint32_t batch_size = 100;
  uint64_t interval_ms = 1000;
  uint64_t timeout_ms = 5000;
  uint32_t max_attempts = 4;
  uint64_t initial_backoff_ms = 500;
  uint64_t max_backoff_ms = 30'000;
  uint32_t max_queued_hints = 100'000;
};

struct PushNotifierStats {
  uint64_t hints = 0;      // PushHints received
  uint64_t coalesced = 0;  // of those, for a device already waiting (its count grew)
  uint64_t disabled = 0;   // received with no webhook configured
  uint64_t no_token = 0;   // devices with no push token, or no longer active: not sent
  uint64_t sent = 0;       // entries in batches the webhook accepted (2xx)
  uint64_t batches_sent = 0;
  uint64_t failed = 0;  // POSTs that failed (each attempt)
  uint64_t retries = 0;
  uint64_t dropped_queue_full = 0;  // hints for a new device over max_queued_hints
  uint64_t dropped_gave_up = 0;     // entries of batches that ran out of attempts
  uint64_t dropped_rejected = 0;    // entries of batches refused with a final 4xx
  uint64_t queued = 0;              // gauge: devices waiting for a batch
  uint64_t in_flight = 0;           // gauge: entries in the batch being sent
};

// A device's token, or nullopt (no token, or the device is not active).
using TokenLookup =
    std::function<std::optional<PushToken>(const auth::AccountId& account, uint32_t device)>;

struct PushEntry {
  auth::AccountId account;
  uint32_t device = 0;
  PushPlatform platform = PushPlatform::kApns;
  std::string token;
  uint32_t count = 0;
};

class PushNotifier {
 public:
  // Parses and resolves the URL and, for https://, loads the CA bundle (blocking: start-up).
  // InvalidArgument for a bad URL or limits; an empty URL makes a notifier that only counts.
  static absl::StatusOr<std::unique_ptr<PushNotifier>> create(uring::EventLoop& loop,
                                                              const PushNotifierOptions& options,
                                                              TokenLookup lookup);
  // Drops what is queued (logged) and waits for the kernel to let go of the timer and the
  // exchange. On the loop thread, outside its callbacks.
  ~PushNotifier();
  PushNotifier(const PushNotifier&) = delete;
  PushNotifier& operator=(const PushNotifier&) = delete;

  // A stored message for an offline device. Never blocks; at most arms a timer.
  void on_hint(const auth::AccountId& account, uint32_t device);

  bool enabled() const { return client_ != nullptr; }
  const PushNotifierStats& stats() const { return stats_; }

  // The JSON body of a batch (exposed for tests). Tokens are from check_push_token's alphabet,
  // so nothing needs escaping.
  static std::string batch_json(std::span<const PushEntry> entries);

 private:
  struct Key {
    uint64_t hi = 0, lo = 0;
    uint32_t device = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return (k.hi * 0x9E3779B97F4A7C15ull ^ k.lo) * 31 + k.device * 0x85EBCA6Bull;
    }
  };
  enum class State : uint8_t { kIdle, kWaiting, kSending, kBackingOff };

  PushNotifier(uring::EventLoop& loop, const PushNotifierOptions& options, TokenLookup lookup,
               std::optional<http::HttpTarget> target, std::shared_ptr<tls::ClientContext> tls);
  void arm(uint64_t delay_ms, State state);
  static void on_timer(uring::Operation& op, const uring::Completion& c);
  // Takes up to batch_size devices with a token off the queue into batch_ and posts it.
  void send_next();
  void post();
  void on_result(absl::StatusOr<http::ClientResponse> result);
  void retry_or_drop(const std::string& why);
  void batch_done();

  uring::EventLoop& loop_;
  PushNotifierOptions options_;
  TokenLookup lookup_;
  std::optional<http::HttpTarget> target_;
  std::deque<Key> order_;                              // devices in the order their first hint came
  std::unordered_map<Key, uint32_t, KeyHash> counts_;  // hints per queued device
  std::vector<PushEntry> batch_;                       // the batch being sent (or backing off)
  uint32_t attempts_ = 0;
  uint64_t next_backoff_ms_ = 0;
  State state_ = State::kIdle;
  uring::Operation timer_op_;
  bool timer_armed_ = false;
  bool closing_ = false;
  PushNotifierStats stats_;
  // Declared last: destroyed first, so an in-flight exchange ends before the batch goes.
  std::unique_ptr<http::HttpClient> client_;
};

}  // namespace herald::push
