// Mosquitto with TLS, two blocking MQTT 3.1.1 clients (tools/loadgen MqttSession over
// tools/client TlsStream): the round trip of a QoS 1 message A -> broker -> B -> broker -> A, one
// at a time, and the publish -> PUBACK time alone. A plain program that prints its figures.
//
//   mqtt_rtt_bench [messages=10000] [payload_bytes=64]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tools/client/tls_stream.h"
#include "tools/loadgen/mqtt_session.h"
#include "tools/mosquitto/broker.h"

namespace {

using herald::tools::TlsStream;
using herald::tools::Trust;
using herald::tools::mqtt::MqttEvent;
using herald::tools::mqtt::MqttSession;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "mqtt_rtt_bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::exit(1);
}

struct Client {
  std::unique_ptr<TlsStream> stream;
  MqttSession session;
  std::vector<uint8_t> out;

  void flush() {
    if (out.empty()) return;
    if (absl::Status s = stream->write_all(out); !s.ok()) die("write", s);
    out.clear();
  }
  // Reads once and parses; sends what parsing and `on_event` wrote.
  void pump(const std::function<void(const MqttEvent&)>& on_event) {
    uint8_t buffer[16 * 1024];
    absl::StatusOr<size_t> n = stream->read_some(buffer, 5'000);
    if (!n.ok()) die("read", n.status());
    if (*n == 0) die("read", absl::DeadlineExceededError("nothing from the broker in 5 s"));
    if (absl::Status s = session.feed(std::span(buffer, *n), out, on_event); !s.ok()) {
      die("feed", s);
    }
    flush();
  }
};

std::unique_ptr<Client> open(uint16_t port, const std::string& cert, const std::string& id,
                             const std::string& topic) {
  auto stream =
      TlsStream::connect({.host = "127.0.0.1", .port = port, .trust = Trust::pinned(cert)});
  if (!stream.ok()) die("connect", stream.status());
  auto client =
      std::make_unique<Client>(Client{std::move(*stream), MqttSession({.client_id = id}), {}});
  client->session.connect(client->out);
  client->session.subscribe(topic, client->out);
  client->flush();
  bool subscribed = false;
  while (!subscribed) {
    client->pump([&](const MqttEvent& e) {
      if (e.kind == MqttEvent::Kind::kSubAck) subscribed = e.return_code == 1;
    });
  }
  return client;
}

void print(const char* what, std::vector<int64_t>& ns, double seconds) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return ns[std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())))] /
           1000.0;
  };
  double sum = 0;
  for (int64_t v : ns) sum += static_cast<double>(v);
  std::printf(
      "%-22s n=%zu  mean=%.1f us  min=%.1f  p50=%.1f  p90=%.1f  p99=%.1f  p99.9=%.1f  max=%.1f "
      "us  (%.0f msg/s one at a time)\n",
      what, ns.size(), sum / static_cast<double>(ns.size()) / 1000.0, ns.front() / 1000.0, at(0.50),
      at(0.90), at(0.99), at(0.999), ns.back() / 1000.0, static_cast<double>(ns.size()) / seconds);
}

}  // namespace

int main(int argc, char** argv) {
  const int messages = argc > 1 ? std::atoi(argv[1]) : 10'000;
  const size_t payload_bytes = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
  if (messages <= 0 || payload_bytes < sizeof(uint64_t)) {
    std::fprintf(stderr, "usage: %s [messages>0] [payload_bytes>=8]\n", argv[0]);
    return 2;
  }
  auto broker = herald::tools::mosquitto::MosquittoBroker::start({.script = HERALD_START_BROKER});
  if (!broker.ok()) die("start mosquitto", broker.status());
  auto cert = herald::tools::read_pem_file((*broker)->cert_file());
  if (!cert.ok()) die("certificate", cert.status());
  const uint16_t port = (*broker)->port();
  std::unique_ptr<Client> a = open(port, *cert, "bench-a", "bench/a");
  std::unique_ptr<Client> b = open(port, *cert, "bench-b", "bench/b");

  std::vector<uint8_t> payload(payload_bytes, 'x');
  const int warmup = std::min(messages, 500);

  // A -> B, B echoes to A: the time until A has its message back.
  std::vector<int64_t> rtt_ns;
  rtt_ns.reserve(messages);
  const auto rtt_start = Clock::now();
  for (int i = -warmup; i < messages; ++i) {
    const uint64_t seq = static_cast<uint64_t>(i + warmup);
    std::memcpy(payload.data(), &seq, sizeof(seq));
    const auto t0 = Clock::now();
    a->session.publish("bench/b", payload, a->out);
    a->flush();
    bool echoed = false;
    while (!echoed) {
      b->pump([&](const MqttEvent& e) {
        if (e.kind != MqttEvent::Kind::kPublish) return;
        b->session.publish("bench/a", e.payload, b->out);
        echoed = true;
      });
    }
    bool back = false;
    while (!back) {
      a->pump([&](const MqttEvent& e) {
        uint64_t got = 0;
        if (e.kind != MqttEvent::Kind::kPublish || e.payload.size() < sizeof(got)) return;
        std::memcpy(&got, e.payload.data(), sizeof(got));
        back = got == seq;
      });
    }
    if (i >= 0) rtt_ns.push_back((Clock::now() - t0).count());
  }
  const double rtt_s = std::chrono::duration<double>(Clock::now() - rtt_start).count();

  // A alone to a topic nobody reads: the broker's PUBACK.
  std::vector<int64_t> ack_ns;
  ack_ns.reserve(messages);
  const auto ack_start = Clock::now();
  for (int i = -warmup; i < messages; ++i) {
    const auto t0 = Clock::now();
    const uint16_t id = a->session.publish("bench/nobody", payload, a->out);
    a->flush();
    bool acked = false;
    while (!acked) {
      a->pump([&](const MqttEvent& e) {
        acked = acked || (e.kind == MqttEvent::Kind::kPubAck && e.packet_id == id);
      });
    }
    if (i >= 0) ack_ns.push_back((Clock::now() - t0).count());
  }
  const double ack_s = std::chrono::duration<double>(Clock::now() - ack_start).count();
  // Drain the PUBACKs B is owed for its echoes.
  while (b->session.publishes_in_flight() > 0) b->pump([](const MqttEvent&) {});

  std::printf("mosquitto TLS, QoS 1, payload %zu bytes, %d messages (+%d warm-up)\n", payload_bytes,
              messages, warmup);
  print("round trip A->B->A", rtt_ns, rtt_s);
  print("publish -> PUBACK", ack_ns, ack_s);
  const auto& sa = a->session.stats();
  std::printf("client A: %llu published, %llu acked, %llu unknown acks, %llu received\n",
              static_cast<unsigned long long>(sa.publishes_sent),
              static_cast<unsigned long long>(sa.pubacks_received),
              static_cast<unsigned long long>(sa.pubacks_unknown),
              static_cast<unsigned long long>(sa.publishes_received));
  return 0;
}
