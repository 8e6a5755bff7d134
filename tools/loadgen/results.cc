// Worker results: the pipe format, the merge and the reports (results.h).
#include "tools/loadgen/results.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"

namespace herald::tools::loadgen {
namespace {

class Writer {
 public:
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    out_.append(s);
  }
  void raw(const void* p, size_t n) {
    if (n > 0) out_.append(static_cast<const char*>(p), n);
  }
  void histogram(const counters::HistogramData& h) {
    u64(h.sum());
    u64(h.max());
    u64(h.buckets().size());
    raw(h.buckets().data(), h.buckets().size() * 8);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  uint64_t u64() {
    uint64_t v = 0;
    raw(&v, 8);
    return v;
  }
  int64_t i64() {
    int64_t v = 0;
    raw(&v, 8);
    return v;
  }
  std::string str() {
    const uint64_t n = u64();
    if (!ok_ || n > in_.size() - at_) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(at_, n));
    at_ += n;
    return s;
  }
  void raw(void* p, size_t n) {
    if (n == 0) return;  // an empty vector's data() may be null: no memcpy/memset with it
    if (!ok_ || n > in_.size() - at_) {
      ok_ = false;
      std::memset(p, 0, n);
      return;
    }
    std::memcpy(p, in_.data() + at_, n);
    at_ += n;
  }
  void histogram(counters::HistogramData& h) {
    const uint64_t sum = u64();
    const uint64_t max = u64();
    const uint64_t n = u64();
    if (!ok_ || n != h.buckets().size()) {
      ok_ = false;
      return;
    }
    std::vector<uint64_t> buckets(n);
    raw(buckets.data(), n * 8);
    h.add(sum, max, buckets);
  }
  template <typename T>
  void records(std::vector<T>& v) {
    const uint64_t n = u64();
    if (!ok_ || n > (in_.size() - at_) / sizeof(T)) {
      ok_ = false;
      return;
    }
    v.resize(n);
    raw(v.data(), n * sizeof(T));
  }
  bool at_end() const { return at_ == in_.size(); }

 private:
  std::string_view in_;
  size_t at_ = 0;
  bool ok_ = true;
};

// The counters in wire order; serialize and deserialize walk the same list.
template <typename R, typename F>
void each_counter(R& r, F&& f) {
  for (uint64_t* c : {&r.sent, &r.resent, &r.acked, &r.delivered, &r.redeliveries, &r.duplicates,
                      &r.stale, &r.order_violations, &r.connects, &r.handshakes, &r.logins,
                      &r.disconnects, &r.sessions_held, &r.pings, &r.link_downs, &r.link_dropped}) {
    f(*c);
  }
}

uint64_t key_of(uint32_t recipient, uint32_t sender) {
  return uint64_t{recipient} << 32 | sender;
}

struct DeliveryKey {
  uint64_t pair;  // recipient << 32 | sender
  uint64_t sequence;
  friend bool operator==(const DeliveryKey&, const DeliveryKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const DeliveryKey& k) {
    return H::combine(std::move(h), k.pair, k.sequence);
  }
};

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

void Topology::recipients(const AckRecord& ack, std::vector<uint32_t>& out) const {
  if (!groups) {
    out.push_back(ack.target);
    return;
  }
  for (uint32_t a = group_begin(ack.target); a < group_end(ack.target); ++a) {
    if (a != ack.sender) out.push_back(a);
  }
}

std::string serialize(const WorkerResult& result) {
  Writer w;
  WorkerResult& r = const_cast<WorkerResult&>(result);
  each_counter(r, [&](uint64_t& c) { w.u64(c); });
  w.i64(r.connect_start_ns);
  w.i64(r.connect_end_ns);
  w.i64(r.link_outage_ns);
  w.i64(r.relogin_ns);
  w.histogram(r.latency_us);
  w.histogram(r.ack_latency_us);
  w.histogram(r.login_us);
  w.u64(r.errors.size());
  for (const auto& [name, count] : r.errors) {
    w.str(name);
    w.u64(count);
  }
  static_assert(sizeof(AckRecord) == 16 && sizeof(DeliveryRecord) == 16);
  w.u64(r.acks.size());
  w.raw(r.acks.data(), r.acks.size() * sizeof(AckRecord));
  w.u64(r.deliveries.size());
  w.raw(r.deliveries.data(), r.deliveries.size() * sizeof(DeliveryRecord));
  w.u64(r.resent_messages.size());
  w.raw(r.resent_messages.data(), r.resent_messages.size() * sizeof(AckRecord));
  w.u64(r.duplicate_deliveries.size());
  w.raw(r.duplicate_deliveries.data(), r.duplicate_deliveries.size() * sizeof(DeliveryRecord));
  return w.take();
}

absl::StatusOr<WorkerResult> deserialize(std::string_view bytes) {
  Reader rd(bytes);
  WorkerResult r;
  each_counter(r, [&](uint64_t& c) { c = rd.u64(); });
  r.connect_start_ns = rd.i64();
  r.connect_end_ns = rd.i64();
  r.link_outage_ns = rd.i64();
  r.relogin_ns = rd.i64();
  rd.histogram(r.latency_us);
  rd.histogram(r.ack_latency_us);
  rd.histogram(r.login_us);
  const uint64_t errors = rd.u64();
  for (uint64_t i = 0; rd.ok() && i < errors; ++i) {
    std::string name = rd.str();
    r.errors[name] = rd.u64();
  }
  rd.records(r.acks);
  rd.records(r.deliveries);
  rd.records(r.resent_messages);
  rd.records(r.duplicate_deliveries);
  if (!rd.ok() || !rd.at_end()) return absl::DataLossError("truncated or malformed result");
  return r;
}

Summary merge(const std::vector<WorkerResult>& results, const Topology& topology) {
  Summary s;
  size_t deliveries = 0;
  for (const WorkerResult& r : results) deliveries += r.deliveries.size();
  absl::flat_hash_set<DeliveryKey> delivered;
  delivered.reserve(deliveries);
  absl::flat_hash_set<DeliveryKey> acked_messages;  // (sender, sequence) with pair = sender
  bool relogin_missing = false;
  for (const WorkerResult& r : results) {
    s.sent += r.sent;
    s.resent += r.resent;
    s.acked += r.acked;
    s.delivered += r.delivered;
    s.redeliveries += r.redeliveries;
    s.duplicates += r.duplicates;
    s.stale += r.stale;
    s.order_violations += r.order_violations;
    s.connects += r.connects;
    s.handshakes += r.handshakes;
    s.logins += r.logins;
    s.disconnects += r.disconnects;
    s.sessions_held += r.sessions_held;
    s.pings += r.pings;
    s.link_downs += r.link_downs;
    s.link_dropped += r.link_dropped;
    if (r.link_outage_ns >= 0) {
      s.link_outage_s = std::max(s.link_outage_s, static_cast<double>(r.link_outage_ns) / 1e9);
    }
    if (r.relogin_ns >= 0) {
      s.restart_relogin_s = std::max(s.restart_relogin_s, static_cast<double>(r.relogin_ns) / 1e9);
    } else if (r.link_downs > 0) {
      relogin_missing = true;  // a worker whose clients never all came back: no figure
    }
    s.latency_us.add(r.latency_us.sum(), r.latency_us.max(), r.latency_us.buckets());
    s.ack_latency_us.add(r.ack_latency_us.sum(), r.ack_latency_us.max(),
                         r.ack_latency_us.buckets());
    s.login_us.add(r.login_us.sum(), r.login_us.max(), r.login_us.buckets());
    for (const auto& [name, count] : r.errors) s.errors[name] += count;
    for (const DeliveryRecord& d : r.deliveries) {
      delivered.insert({key_of(d.recipient, d.sender), d.sequence});
    }
  }
  if (relogin_missing) s.restart_relogin_s = -1;
  // A duplicate of a message its sender resent is a retry's; the rest were sent once.
  absl::flat_hash_set<DeliveryKey> resent;  // pair = sender
  for (const WorkerResult& r : results) {
    for (const AckRecord& m : r.resent_messages) resent.insert({m.sender, m.sequence});
  }
  for (const WorkerResult& r : results) {
    for (const DeliveryRecord& d : r.duplicate_deliveries) {
      if (resent.contains(DeliveryKey{d.sender, d.sequence})) ++s.retry_duplicates;
    }
  }
  s.duplicates -= std::min(s.duplicates, s.retry_duplicates);
  std::vector<uint32_t> recipients;
  for (const WorkerResult& r : results) {
    for (const AckRecord& a : r.acks) {
      acked_messages.insert({a.sender, a.sequence});
      recipients.clear();
      topology.recipients(a, recipients);
      for (uint32_t to : recipients) {
        ++s.expected;
        if (!delivered.contains(DeliveryKey{key_of(to, a.sender), a.sequence})) {
          ++s.lost;
          if (s.lost_examples.size() < 10) s.lost_examples.push_back({a.sender, to, a.sequence});
        }
      }
    }
  }
  for (const DeliveryKey& d : delivered) {
    if (!acked_messages.contains(DeliveryKey{d.pair & 0xffffffffu, d.sequence})) {
      ++s.delivered_unacked;
    }
  }
  return s;
}

int exit_code_of(const Summary& s, bool restarts_expected) {
  if (s.lost > 0) return 1;
  if ((s.duplicates > 0 || s.retry_duplicates > 0) && !restarts_expected) return 2;
  return 0;
}

std::string to_json(const Summary& s) {
  std::string out = "{";
  auto num = [&](const char* name, uint64_t v) { out += absl::StrFormat("\"%s\": %d, ", name, v); };
  auto real = [&](const char* name, double v) {
    out += absl::StrFormat("\"%s\": %.3f, ", name, v);
  };
  auto percentiles = [&](const char* name, const counters::HistogramData& h) {
    out += absl::StrFormat(
        "\"%s\": {\"p50\": %d, \"p99\": %d, \"p999\": %d, \"max\": %d, \"count\": %d}, ", name,
        h.percentile(0.5), h.percentile(0.99), h.percentile(0.999), h.max(), h.count());
  };
  out += absl::StrFormat("\"scenario\": \"%s\", ", std::string(scenario_name(s.scenario)));
  num("processes", s.processes);
  num("connections", s.connections);
  num("sent", s.sent);
  num("resent", s.resent);
  num("acked", s.acked);
  num("delivered", s.delivered);
  num("expected", s.expected);
  num("lost", s.lost);
  num("duplicates", s.duplicates);
  num("retry_duplicates", s.retry_duplicates);
  num("redeliveries", s.redeliveries);
  num("stale", s.stale);
  num("delivered_unacked", s.delivered_unacked);
  num("order_violations", s.order_violations);
  if (s.late >= 0) num("late", static_cast<uint64_t>(s.late));
  real("send_s", s.send_s);
  real("msgs_per_s", s.msgs_per_s);
  percentiles("latency_us", s.latency_us);
  percentiles("ack_latency_us", s.ack_latency_us);
  percentiles("login_us", s.login_us);
  num("connects", s.connects);
  num("handshakes", s.handshakes);
  num("logins", s.logins);
  num("disconnects", s.disconnects);
  num("sessions_held", s.sessions_held);
  num("pings", s.pings);
  real("connect_s", s.connect_s);
  real("connect_per_s", s.connect_per_s);
  real("handshakes_per_s", s.handshakes_per_s);
  if (s.reconnect_s >= 0) real("reconnect_s", s.reconnect_s);
  if (s.link_downs > 0) {
    num("link_downs", s.link_downs);
    num("link_dropped", s.link_dropped);
    if (s.link_outage_s >= 0) real("link_outage_s", s.link_outage_s);
    if (s.restart_relogin_s >= 0) real("restart_relogin_s", s.restart_relogin_s);
  }
  if (s.drain_s >= 0) {
    real("drain_s", s.drain_s);
    real("drain_per_s", s.drain_per_s);
  }
  out += "\"lost_examples\": [";
  for (size_t i = 0; i < s.lost_examples.size(); ++i) {
    const AckRecord& l = s.lost_examples[i];
    out += absl::StrFormat("%s{\"sender\": %d, \"recipient\": %d, \"sequence\": %d}",
                           i == 0 ? "" : ", ", l.sender, l.target, l.sequence);
  }
  out += "], ";
  out += "\"errors\": {";
  bool first = true;
  for (const auto& [name, count] : s.errors) {
    out += absl::StrFormat("%s\"%s\": %d", first ? "" : ", ", json_escape(name), count);
    first = false;
  }
  out += "}}";
  return out;
}

std::string to_text(const Summary& s) {
  std::string out;
  out += absl::StrFormat("scenario %s: %d connections in %d processes\n",
                         std::string(scenario_name(s.scenario)), s.connections, s.processes);
  out += absl::StrFormat(
      "connect phase: %.2f s (%.0f connects/s, %.0f handshakes/s); whole run: %d connects, %d "
      "handshakes, %d logins, %d disconnects; login p50 %d us, p99 %d us\n",
      s.connect_s, s.connect_per_s, s.handshakes_per_s, s.connects, s.handshakes, s.logins,
      s.disconnects, s.login_us.percentile(0.5), s.login_us.percentile(0.99));
  if (s.reconnect_s >= 0) {
    out +=
        absl::StrFormat("reconnect storm: everyone logged in again after %.3f s\n", s.reconnect_s);
  }
  if (s.link_downs > 0) {
    out += absl::StrFormat(
        "dataplane restart: link down %d times, %d connections dropped; link down %.3f s, "
        "everyone logged in again %.3f s after it came back\n",
        s.link_downs, s.link_dropped, s.link_outage_s, s.restart_relogin_s);
  }
  if (s.scenario == Scenario::kIdle) {
    out += absl::StrFormat("held %d sessions, %d pings\n", s.sessions_held, s.pings);
  }
  out += absl::StrFormat(
      "messages: %d sent (%d resends), %d acked, %d delivered of %d expected in %.2f s: %.0f "
      "msgs/s\n",
      s.sent, s.resent, s.acked, s.delivered, s.expected, s.send_s, s.msgs_per_s);
  out += absl::StrFormat("latency send->delivered: p50 %d us, p99 %d us, p99.9 %d us, max %d us\n",
                         s.latency_us.percentile(0.5), s.latency_us.percentile(0.99),
                         s.latency_us.percentile(0.999), s.latency_us.max());
  out += absl::StrFormat("latency send->acked:     p50 %d us, p99 %d us, p99.9 %d us, max %d us\n",
                         s.ack_latency_us.percentile(0.5), s.ack_latency_us.percentile(0.99),
                         s.ack_latency_us.percentile(0.999), s.ack_latency_us.max());
  if (s.drain_s >= 0) {
    out += absl::StrFormat("drain: %.3f s, %.0f msgs/s, %d order violations\n", s.drain_s,
                           s.drain_per_s, s.order_violations);
  }
  out += absl::StrFormat(
      "verdict: %d lost, %d duplicates, %d retry duplicates, %d redeliveries, %d stale, %d "
      "delivered but unacked\n",
      s.lost, s.duplicates, s.retry_duplicates, s.redeliveries, s.stale, s.delivered_unacked);
  if (s.late >= 0) {
    out +=
        absl::StrFormat("recheck: %d messages arrived only after everyone reconnected\n", s.late);
  }
  for (const AckRecord& l : s.lost_examples) {
    out += absl::StrFormat("  lost: sender %d -> %d sequence %d\n", l.sender, l.target, l.sequence);
  }
  if (!s.errors.empty()) {
    out += "errors:";
    for (const auto& [name, count] : s.errors) out += absl::StrFormat(" %s=%d", name, count);
    out += "\n";
  }
  return out;
}

}  // namespace herald::tools::loadgen
