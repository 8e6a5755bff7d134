// What each worker process measured, how it travels to the coordinator (a pipe), and the merge
// that decides the verdict: lost = acked but never delivered, duplicates = one message shown
// twice (two server ids), redeliveries = the same server id again (an app drops those).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "platform/counters/histogram.h"
#include "tools/loadgen/options.h"

namespace herald::tools::loadgen {

// A message the server acked: `target` is the recipient's account index, or the group's index
// for group messages (whose recipients are every other member).
struct AckRecord {
  uint32_t sender = 0;
  uint32_t target = 0;
  uint64_t sequence = 0;
};

// A message delivered to the application for the first time (a recipient owned by this worker).
struct DeliveryRecord {
  uint32_t sender = 0;
  uint32_t recipient = 0;
  uint64_t sequence = 0;
};

// Who receives what: the message topology of a run, from the options.
struct Topology {
  bool groups = false;
  uint32_t group_size = 0;
  uint32_t accounts = 0;
  // Members of group g: accounts [g * group_size, min((g + 1) * group_size, accounts)).
  uint32_t group_count() const {
    return group_size == 0 ? 0 : (accounts + group_size - 1) / group_size;
  }
  uint32_t group_of(uint32_t account) const { return account / group_size; }
  uint32_t group_begin(uint32_t g) const { return g * group_size; }
  uint32_t group_end(uint32_t g) const { return std::min(accounts, (g + 1) * group_size); }
  // Recipients of one acked message, appended to `out`.
  void recipients(const AckRecord& ack, std::vector<uint32_t>& out) const;
};

// Histograms in microseconds: 16 sub-buckets per power of two (3% resolution) up to 2^36 us.
inline constexpr counters::HistogramSpec kLatencySpec{.sub_bucket_bits = 4, .max_value_bits = 36};

struct WorkerResult {
  // Counters; names as in the JSON output.
  uint64_t sent = 0;    // distinct messages written (resends not counted)
  uint64_t resent = 0;  // resends after a reconnect or a retryable error
  uint64_t acked = 0;
  uint64_t delivered = 0;         // first deliveries of this run's messages
  uint64_t redeliveries = 0;      // the same server id again
  uint64_t duplicates = 0;        // the same message under a second server id
  uint64_t stale = 0;             // deliveries left over from another run (acked, not counted)
  uint64_t order_violations = 0;  // offline-drain: a sender's messages out of order
  uint64_t connects = 0;          // TCP connections established
  uint64_t handshakes = 0;        // TLS handshakes completed
  uint64_t logins = 0;            // sessions authenticated (AuthOk / CONNACK)
  uint64_t disconnects = 0;       // sessions lost after login
  uint64_t sessions_held = 0;     // logged in when the hold ended (idle)
  uint64_t pings = 0;
  uint64_t link_downs = 0;    // DPDK mode: link losses (the dataplane restarted)
  uint64_t link_dropped = 0;  // connections those losses ended
  // The last link loss: down -> up again, and up again -> every active client logged in
  // (-1: none, or not everyone was back when the run ended).
  int64_t link_outage_ns = -1;
  int64_t relogin_ns = -1;
  // CLOCK_MONOTONIC of the first connect attempt and of the last first login (connect phase).
  int64_t connect_start_ns = 0;
  int64_t connect_end_ns = 0;
  counters::HistogramData latency_us{kLatencySpec};      // send -> delivered
  counters::HistogramData ack_latency_us{kLatencySpec};  // send -> ServerAck
  counters::HistogramData login_us{kLatencySpec};        // connect -> logged in
  std::map<std::string, uint64_t> errors;                // by stable name
  std::vector<AckRecord> acks;
  std::vector<DeliveryRecord> deliveries;
  // Messages this worker's clients sent more than once (target unused), and the deliveries to
  // its clients that were duplicates: the merge sorts duplicates by whether a resend explains
  // them.
  std::vector<AckRecord> resent_messages;
  std::vector<DeliveryRecord> duplicate_deliveries;

  void error(const std::string& name, uint64_t n = 1) { errors[name] += n; }
};

// Binary form for the pipe (one writer, one reader, same binary: no versioning needed).
std::string serialize(const WorkerResult& result);
absl::StatusOr<WorkerResult> deserialize(std::string_view bytes);

// The merged verdict.
struct Summary {
  Scenario scenario = Scenario::kOneToOne;
  uint32_t processes = 0;
  uint32_t connections = 0;
  uint64_t sent = 0, resent = 0, acked = 0, delivered = 0, expected = 0;
  // duplicates: a message its sender sent once, shown twice (always a server fault).
  // retry_duplicates: a message resent after its connection was lost, unacked, shown twice:
  // what a retry crossing a dataplane restart may do (the dedup window is in the dataplane's
  // memory, docs/PROTOCOL.md), a fault otherwise.
  uint64_t lost = 0, duplicates = 0, retry_duplicates = 0, redeliveries = 0, stale = 0;
  uint64_t order_violations = 0;
  uint64_t delivered_unacked = 0;  // delivered, but the sender never saw the ack
  // --recheck-reconnect: delivered only after everyone reconnected (kept, but not pushed).
  int64_t late = -1;
  uint64_t connects = 0, handshakes = 0, logins = 0, disconnects = 0, sessions_held = 0;
  uint64_t pings = 0;
  uint64_t link_downs = 0, link_dropped = 0;
  // The slowest worker's last link loss (-1: none): the link's outage, and the link back up ->
  // every client logged in again (the dataplane-restart reconnect figure).
  double link_outage_s = -1;
  double restart_relogin_s = -1;
  double send_s = 0;      // send phase length
  double msgs_per_s = 0;  // deliveries per second of the send phase (incl. settle for drain)
  double connect_s = 0;
  double connect_per_s = 0;
  double handshakes_per_s = 0;
  double reconnect_s = -1;  // reconnect-storm: drop -> everyone logged in again
  double drain_s = -1;      // offline-drain: recipients connect -> queues drained
  double drain_per_s = 0;
  counters::HistogramData latency_us{kLatencySpec};
  counters::HistogramData ack_latency_us{kLatencySpec};
  counters::HistogramData login_us{kLatencySpec};
  std::map<std::string, uint64_t> errors;
  // First few lost messages, for the text report.
  std::vector<AckRecord> lost_examples;
};

// Sums the counters and checks every acked message's expected deliveries against what the
// recipients' workers saw.
Summary merge(const std::vector<WorkerResult>& results, const Topology& topology);

// 0 clean, 1 an acked message lost, 2 duplicates or retry_duplicates only (0 for them with
// restarts_expected).
int exit_code_of(const Summary& summary, bool restarts_expected = false);

std::string to_json(const Summary& summary);
std::string to_text(const Summary& summary);

}  // namespace herald::tools::loadgen
