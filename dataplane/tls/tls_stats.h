// The TLS layer's counters: one X-macro table of events, plus failures by tls::TlsError. A
// plain struct per worker (no atomics: one thread writes it); the worker mirrors it into the
// counters segment as dp.tls.<name> and dp.tls.error.<tls_error_name>.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "platform/tls/connection.h"

namespace herald::dataplane {

// X(enumerator, stable name, what it counts). Names are operator interface: append only.
#define HERALD_TLS_EVENTS(X)                                                                      \
  X(kAccepted, "accepted", "connections handed to the TLS layer")                                 \
  X(kRejectedFull, "rejected_full", "accepts closed at once: every connection slot in use")       \
  X(kCreateFailed, "create_failed", "accepts closed at once: no TLS connection (memory)")         \
  X(kHandshakeOk, "handshake_ok", "TLS handshakes completed")                                     \
  X(kResumed, "resumed", "handshakes that resumed a session from a ticket")                       \
  X(kTls13, "tls13", "handshakes that negotiated TLS 1.3")                                        \
  X(kTls12, "tls12", "handshakes that negotiated TLS 1.2")                                        \
  X(kHandshakeFailed, "handshake_failed", "handshakes that failed (reason: dp.tls.error.*)")      \
  X(kHandshakeAbandoned, "handshake_abandoned", "peers that left before finishing the handshake") \
  X(kFailedAfterHandshake, "failed_after_handshake", "established connections with a TLS error")  \
  X(kPeerCloseNotify, "peer_close_notify", "peers that closed with close_notify")                 \
  X(kSendRefused, "send_refused", "plaintext sends refused (closing, no handshake, queue full)")  \
  X(kCertificateReloads, "certificate_reloads", "certificates swapped in without a restart")      \
  X(kClosed, "closed", "connections that ended (every accepted one ends once)")                   \
  X(kCompactSwitches, "compact_switches",                                                         \
    "TLS 1.3 connections that freed their SSL after the handshake")                               \
  X(kKeyUpdatesReceived, "key_updates_received", "peer KeyUpdates handled in compact mode")       \
  X(kKeyUpdatesSent, "key_updates_sent", "KeyUpdates sent in answer to update_requested")         \
  X(kParked, "parked", "idle compact connections that dropped their AEAD contexts")               \
  X(kCompactBadRecordMac, "compact_bad_record_mac", "compact mode: record failed authentication") \
  X(kCompactRecordType, "compact_bad_record_type", "compact mode: outer/inner type not allowed")  \
  X(kCompactRecordVersion, "compact_bad_record_version",                                          \
    "compact mode: legacy version not 0x0303")                                                    \
  X(kCompactRecordOverflow, "compact_record_overflow", "compact mode: record over the RFC limit") \
  X(kCompactEmptyRecord, "compact_empty_record", "compact mode: inner plaintext all zero")        \
  X(kCompactHandshakeMessage, "compact_unexpected_handshake",                                     \
    "compact mode: not a KeyUpdate, or misaligned")                                               \
  X(kCompactDecode, "compact_decode_error", "compact mode: malformed KeyUpdate or alert")         \
  X(kCompactSequenceOverflow, "compact_sequence_exhausted",                                       \
    "compact mode: 2^64-1 records on one key")

enum class TlsEvent : uint8_t {
#define HERALD_TLS_EVENT_ENUM(name, text, doc) name,
  HERALD_TLS_EVENTS(HERALD_TLS_EVENT_ENUM)
#undef HERALD_TLS_EVENT_ENUM
      kCount
};
inline constexpr size_t kTlsEventCount = static_cast<size_t>(TlsEvent::kCount);

// The counter of each compact-mode rejection (tls::CompactError, kNone excluded), in order.
static_assert(static_cast<int>(TlsEvent::kCompactSequenceOverflow) -
                      static_cast<int>(TlsEvent::kCompactBadRecordMac) + 2 ==
                  tls::kCompactErrorCount,
              "one counter per tls::CompactError");
[[nodiscard]] constexpr TlsEvent compact_error_event(tls::CompactError error) {
  return static_cast<TlsEvent>(static_cast<int>(TlsEvent::kCompactBadRecordMac) +
                               static_cast<int>(error) - 1);
}

[[nodiscard]] constexpr std::string_view tls_event_name(TlsEvent event) {
  switch (event) {
#define HERALD_TLS_EVENT_NAME(name, text, doc) \
  case TlsEvent::name: return text;
    HERALD_TLS_EVENTS(HERALD_TLS_EVENT_NAME)
#undef HERALD_TLS_EVENT_NAME
    case TlsEvent::kCount: break;
  }
  return "unknown";
}

struct TlsStats {
  std::array<uint64_t, kTlsEventCount> events{};
  // Indexed by tls::TlsError (names: tls::tls_error_name); kNone stays 0.
  std::array<uint64_t, tls::kTlsErrorCount> errors{};

  uint64_t operator[](TlsEvent e) const { return events[static_cast<size_t>(e)]; }
  uint64_t error(tls::TlsError e) const { return errors[static_cast<size_t>(e)]; }
  void count(TlsEvent e) { ++events[static_cast<size_t>(e)]; }
};

// Every counter with its stable name, for mirroring into the counters segment:
// f(section, name, value) with section "" (events) or "error"; the kNone slot is skipped.
template <typename F>
void for_each_counter(const TlsStats& stats, F&& f) {
  for (size_t i = 0; i < kTlsEventCount; ++i) {
    f(std::string_view(), tls_event_name(static_cast<TlsEvent>(i)), stats.events[i]);
  }
  for (size_t i = 1; i < stats.errors.size(); ++i) {
    f(std::string_view("error"), tls::tls_error_name(static_cast<tls::TlsError>(i)),
      stats.errors[i]);
  }
}

}  // namespace herald::dataplane
