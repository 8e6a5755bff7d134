// Full TLS 1.3 handshakes per second per core on the server side, beside the crypto bound
// (one X25519 key pair + one X25519 shared secret + one ECDSA P-256 signature) measured in the
// same run. Prints the figures of docs/PERFORMANCE.md ("TLS handshakes").
//
//   handshake_bench [--handshakes=N] [--rounds=R] [--batch=K]
//
// Client and server live in this one thread and pass bytes in memory. Only the server's calls
// are timed, with CLOCK_THREAD_CPUTIME_ID (CPU time: other tenants of a shared machine do not
// inflate it), so the result is server handshakes per core-second. The clock is read once per
// phase of a batch of K connections, not per call, so its own cost stays out of the figure.
#include <openssl/curve25519.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dataplane/tls/chat_tls.h"
#include "dataplane/tls/plaintext.h"
#include "dataplane/tls/tls_layer.h"
#include "dataplane/transport/transport.h"
#include "platform/tls/certificate.h"
#include "platform/tls/connection.h"
#include "platform/tls/context.h"

namespace herald::tls {
namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "handshake_bench: %s\n", what.c_str());
  std::exit(1);
}

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double wall_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU and wall time of the timed (server) part of a measurement.
struct Timer {
  double cpu_s = 0;
  double wall_s = 0;
  double cpu_start = 0;
  double wall_start = 0;
  void start() {
    wall_start = herald::tls::wall_s();
    cpu_start = thread_cpu_s();
  }
  void stop() {
    cpu_s += thread_cpu_s() - cpu_start;
    wall_s += herald::tls::wall_s() - wall_start;
  }
};

// ---- the crypto bound --------------------------------------------------------------------------

// Exactly the public-key work a TLS 1.3 server does in one full X25519 + ECDSA P-256 handshake:
// its ephemeral key pair, the shared secret with the client's share, and the CertificateVerify
// signature (RFC 8446 §4.4.3: 64 spaces, the context string, a zero byte, the transcript hash;
// signed through EVP_DigestSign as BoringSSL's handshake does).
Timer crypto_bound(EVP_PKEY* key, int iterations) {
  uint8_t client_public[32];
  uint8_t client_private[64];
  X25519_keypair(client_public, client_private);
  static constexpr char kContext[] = "TLS 1.3, server CertificateVerify";
  uint8_t content[64 + sizeof(kContext) + 32];
  std::memset(content, 0x20, 64);
  std::memcpy(content + 64, kContext, sizeof(kContext));  // with its terminating zero byte
  uint8_t* transcript_hash = content + 64 + sizeof(kContext);
  std::memset(transcript_hash, 0, 32);
  std::vector<uint8_t> signature(EVP_PKEY_size(key));
  bssl::ScopedEVP_MD_CTX md;
  uint64_t sink = 0;
  Timer t;
  t.start();
  for (int i = 0; i < iterations; ++i) {
    uint8_t public_value[32];
    uint8_t private_key[32];
    uint8_t shared[32];
    X25519_keypair(public_value, private_key);
    if (X25519(shared, private_key, client_public) != 1) die("X25519 failed");
    // A different message each time, as a real transcript hash would be.
    std::memcpy(transcript_hash, shared, 32);
    size_t signature_len = signature.size();
    md.Reset();
    if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
        EVP_DigestSign(md.get(), signature.data(), &signature_len, content, sizeof(content)) != 1) {
      die("ECDSA P-256 signing failed");
    }
    sink += signature[signature_len - 1] + public_value[0];
  }
  t.stop();
  if (sink == 1) std::fprintf(stderr, " ");  // keeps the work observable
  return t;
}

// ---- the server-side handshake through platform/tls ----------------------------------------

// The ServerHello's key_share group (RFC 8446 §4.2.8), read from the server's first flight
// (plain records), to check the handshake negotiated what the figure claims. 0 if not found.
uint16_t server_hello_group(std::span<const uint8_t> flight) {
  // record header (5), handshake header (4), legacy_version (2), random (32)
  size_t pos = 5 + 4 + 2 + 32;
  if (flight.size() < pos + 1 || flight[0] != 22 || flight[5] != 2) return 0;
  pos += 1 + flight[pos];  // legacy_session_id_echo
  pos += 2 + 1;            // cipher_suite, legacy_compression_method
  if (flight.size() < pos + 2) return 0;
  const size_t end = std::min(flight.size(), pos + 2 + ((flight[pos] << 8) | flight[pos + 1]));
  pos += 2;
  while (pos + 4 <= end) {
    const uint16_t type = static_cast<uint16_t>((flight[pos] << 8) | flight[pos + 1]);
    const size_t len = (flight[pos + 2] << 8) | flight[pos + 3];
    if (type == 51 && len >= 2 && pos + 6 <= end) {  // key_share: group first
      return static_cast<uint16_t>((flight[pos + 4] << 8) | flight[pos + 5]);
    }
    pos += 4 + len;
  }
  return 0;
}

void copy_pending(Connection& conn, std::vector<uint8_t>* to) {
  const std::span<const uint8_t> pending = conn.pending_ciphertext();
  to->assign(pending.begin(), pending.end());
  conn.consume_ciphertext(pending.size());
}

void feed_all(Connection& conn, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    const size_t n = conn.feed_ciphertext(bytes);
    if (conn.error() != TlsError::kNone) {
      die("handshake failed: " + std::string(tls_error_name(conn.error())) + " " +
          std::string(conn.error_reason()));
    }
    if (n == 0) die("connection took no input");
    bytes = bytes.subspan(n);
  }
}

// Runs the clients' steps on a thread of their own ("tls-client"), one step at a time while
// the server's thread waits, so that a profiler can tell the server's samples from the
// clients' by thread name (`perf report --comms tls-server`). The figures do not change: the
// server's thread CPU time is measured either way.
class ClientThread {
 public:
  ClientThread() : thread_([this] { loop(); }) {}
  ~ClientThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void run(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(lock, [this] { return job_ == nullptr; });
  }

 private:
  void loop() {
    pthread_setname_np(pthread_self(), "tls-client");
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || job_ != nullptr; });
      if (stop_) return;
      job_();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool stop_ = false;
  std::thread thread_;
};

// The client's part of the batch (not timed): ClientHellos first, then each client's answer to
// its server's flight.
struct Clients {
  std::shared_ptr<ClientContext> context;
  std::vector<std::unique_ptr<Connection>> conns;
  std::vector<std::vector<uint8_t>> to_server;
  std::vector<std::vector<uint8_t>> to_client;

  ClientThread* thread = nullptr;  // null: on the caller's thread

  explicit Clients(std::shared_ptr<ClientContext> ctx, int batch)
      : context(std::move(ctx)), conns(batch), to_server(batch), to_client(batch) {}

  void on_client(const std::function<void()>& job) {
    if (thread != nullptr) {
      thread->run(job);
    } else {
      job();
    }
  }
  void hello(int count) {
    on_client([this, count] { hello_here(count); });
  }
  void finish(int count) {
    on_client([this, count] { finish_here(count); });
  }
  void reset(int count) {
    on_client([this, count] {
      for (int i = 0; i < count; ++i) conns[i].reset();
    });
  }

 private:
  void hello_here(int count) {
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<std::unique_ptr<Connection>> c = Connection::client(context, "localhost");
      if (!c.ok()) die("client: " + c.status().ToString());
      conns[i] = std::move(*c);
      copy_pending(*conns[i], &to_server[i]);
    }
  }
  void finish_here(int count) {
    for (int i = 0; i < count; ++i) {
      feed_all(*conns[i], to_client[i]);
      if (!conns[i]->handshake_done()) die("client handshake did not finish");
      copy_pending(*conns[i], &to_server[i]);
    }
  }
};

struct Checks {
  uint16_t group = 0;
  std::string cipher;
  std::string alpn;
};

Timer platform_handshakes(const std::shared_ptr<ServerContext>& server_ctx, Clients& clients,
                          int handshakes, int batch, Checks* checks) {
  std::vector<std::unique_ptr<Connection>> servers(batch);
  Timer t;
  for (int done = 0; done < handshakes; done += batch) {
    const int k = std::min(batch, handshakes - done);
    clients.hello(k);
    t.start();  // ClientHello in, ServerHello..Finished out
    for (int i = 0; i < k; ++i) {
      absl::StatusOr<std::unique_ptr<Connection>> s = Connection::server(server_ctx);
      if (!s.ok()) die("server: " + s.status().ToString());
      servers[i] = std::move(*s);
      feed_all(*servers[i], clients.to_server[i]);
      copy_pending(*servers[i], &clients.to_client[i]);
    }
    t.stop();
    if (done == 0) checks->group = server_hello_group(clients.to_client[0]);
    clients.finish(k);
    t.start();  // client Finished in, NewSessionTicket out, the SSL freed (compact mode)
    for (int i = 0; i < k; ++i) {
      feed_all(*servers[i], clients.to_server[i]);
      if (!servers[i]->handshake_done()) die("server handshake did not finish");
      copy_pending(*servers[i], &clients.to_client[i]);
    }
    t.stop();
    if (done == 0) {
      checks->cipher = servers[0]->cipher_name();
      checks->alpn = std::string(servers[0]->alpn());
      if (servers[0]->resumed()) die("a handshake was resumed");
    }
    t.start();  // the connection ends
    for (int i = 0; i < k; ++i) servers[i].reset();
    t.stop();
    clients.reset(k);
  }
  return t;
}

}  // namespace
}  // namespace herald::tls

// ---- the same through the dataplane's TLS layer ----------------------------------------------

namespace herald::dataplane {
namespace {

// A transport that copies what is sent into per-connection buffers (a real one copies into its
// send queue too) and does nothing else.
class MemoryTransport final : public Transport {
 public:
  explicit MemoryTransport(int batch) : sent_(batch) {}
  void start(TransportEvents& /*events*/) override {}
  SendResult send(ConnectionId id, std::span<const uint8_t> bytes) override {
    std::vector<uint8_t>& to = sent_[slot(id)];
    to.insert(to.end(), bytes.begin(), bytes.end());
    return SendResult::kOk;
  }
  SendResult send_gather(ConnectionId id,
                         std::span<const std::span<const uint8_t>> parts) override {
    for (std::span<const uint8_t> p : parts) (void)send(id, p);
    return SendResult::kOk;
  }
  void close(ConnectionId /*id*/, CloseMode /*mode*/) override { ++closes_; }
  void set_reading(ConnectionId /*id*/, bool /*reading*/) override {}
  uint32_t queued_bytes(ConnectionId /*id*/) const override { return 0; }
  uint32_t connections() const override { return 0; }
  void stop() override {}

  std::vector<uint8_t>& sent(ConnectionId id) { return sent_[slot(id)]; }
  uint64_t closes() const { return closes_; }

 private:
  size_t slot(ConnectionId id) const { return (id - 1) % sent_.size(); }
  std::vector<std::vector<uint8_t>> sent_;
  uint64_t closes_ = 0;
};

class NullUpper final : public PlaintextEvents {
 public:
  void on_open(ConnectionId /*id*/, const PeerAddress& /*peer*/) override {}
  void on_plaintext(ConnectionId /*id*/, std::span<const uint8_t> /*bytes*/) override {}
  void on_writable(ConnectionId /*id*/) override {}
  void on_closed(ConnectionId /*id*/, CloseReason /*reason*/) override {}
};

tls::Timer dataplane_handshakes(const std::shared_ptr<tls::ServerContext>& server_ctx,
                                tls::Clients& clients, int handshakes, int batch) {
  MemoryTransport transport(batch);
  NullUpper upper;
  TlsLayer layer(transport, server_ctx, {.max_connections = static_cast<uint32_t>(batch)});
  layer.set_upper(upper);
  PeerAddress peer;
  peer.address.ss_family = AF_INET;
  peer.length = sizeof(sockaddr_in);
  ConnectionId next_id = 1;
  tls::Timer t;
  for (int done = 0; done < handshakes; done += batch) {
    const int k = std::min(batch, handshakes - done);
    const ConnectionId first = next_id;
    next_id += static_cast<ConnectionId>(batch);  // ids never repeat; slot = (id - 1) % batch
    clients.hello(k);
    t.start();
    for (int i = 0; i < k; ++i) {
      const ConnectionId id = first + static_cast<ConnectionId>(i);
      transport.sent(id).clear();
      layer.on_accepted(id, peer);
      layer.on_data(id, clients.to_server[i]);
    }
    t.stop();
    for (int i = 0; i < k; ++i) {
      clients.to_client[i].swap(transport.sent(first + static_cast<ConnectionId>(i)));
    }
    clients.finish(k);
    t.start();
    for (int i = 0; i < k; ++i) {
      const ConnectionId id = first + static_cast<ConnectionId>(i);
      transport.sent(id).clear();
      layer.on_data(id, clients.to_server[i]);
    }
    t.stop();
    t.start();
    for (int i = 0; i < k; ++i) {
      layer.on_closed(first + static_cast<ConnectionId>(i), CloseReason::kPeerClosed);
    }
    t.stop();
    clients.reset(k);
  }
  const TlsStats& stats = layer.stats();
  if (stats.events[static_cast<size_t>(TlsEvent::kHandshakeOk)] !=
          static_cast<uint64_t>(handshakes) ||
      stats.events[static_cast<size_t>(TlsEvent::kCompactSwitches)] !=
          static_cast<uint64_t>(handshakes) ||
      transport.closes() != 0) {
    tls::die("dataplane handshakes did not all succeed in compact mode");
  }
  return t;
}

}  // namespace
}  // namespace herald::dataplane

namespace {

int flag(int argc, char** argv, std::string_view name, int fallback) {
  const std::string prefix = "--" + std::string(name) + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with(prefix)) {
      const int v = std::atoi(argv[i] + prefix.size());
      if (v <= 0) herald::tls::die("bad " + std::string(argv[i]));
      return v;
    }
  }
  return fallback;
}

struct Spread {
  std::vector<double> values;
  double median() const {
    std::vector<double> v = values;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0
                     : (v.size() % 2 == 1 ? v[v.size() / 2]
                                          : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
  }
  double min() const {
    return values.empty() ? 0 : *std::min_element(values.begin(), values.end());
  }
  double max() const {
    return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  }
};

void print_spread(const char* name, const Spread& s, const char* unit) {
  std::printf("%-34s median %9.0f  min %9.0f  max %9.0f %s\n", name, s.median(), s.min(), s.max(),
              unit);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace herald;
  bool profile = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: %s [--handshakes=N] [--rounds=R] [--batch=K] [--profile]\n"
          "  --profile: only the platform/tls handshakes, clients on a thread of their own\n"
          "             (perf record -e cpu-clock -g %s --profile; perf report --comms "
          "tls-server)\n",
          argv[0], argv[0]);
      return 0;
    }
    if (a == "--profile") {
      profile = true;
      continue;
    }
    if (!a.starts_with("--handshakes=") && !a.starts_with("--rounds=") &&
        !a.starts_with("--batch=")) {
      tls::die("unknown argument " + std::string(a));
    }
  }
  const int handshakes = flag(argc, argv, "handshakes", 2000);
  const int rounds = flag(argc, argv, "rounds", 5);
  const int batch = std::min(flag(argc, argv, "batch", 64), handshakes);

  tls::CertificateRequest request;
  request.key_type = tls::KeyType::kEcdsaP256;
  request.common_name = "localhost";
  request.dns_names = {"localhost"};
  absl::StatusOr<tls::PemCertificate> pem = tls::generate_certificate(request);
  if (!pem.ok()) tls::die(pem.status().ToString());
  absl::StatusOr<std::shared_ptr<const tls::CertifiedKey>> cert =
      tls::certified_key_from_pem(pem->cert_pem, pem->key_pem);
  if (!cert.ok()) tls::die(cert.status().ToString());

  // The chat listener's options (dataplane/tls/chat_tls.cc): TLS 1.3, ALPN, one ticket per
  // handshake, compact mode. No client ever resumes here, so every handshake is a full one.
  tls::ServerOptions options;
  options.alpn_protocols = {dataplane::kChatAlpn};
  options.tickets_per_handshake = 1;
  absl::StatusOr<std::shared_ptr<tls::ServerContext>> server =
      tls::ServerContext::create(options, *cert);
  if (!server.ok()) tls::die(server.status().ToString());
  options.session_tickets = false;
  absl::StatusOr<std::shared_ptr<tls::ServerContext>> server_no_ticket =
      tls::ServerContext::create(options, *cert);
  if (!server_no_ticket.ok()) tls::die(server_no_ticket.status().ToString());

  tls::ClientOptions client_options;
  client_options.min_version = tls::TlsVersion::kTls13;
  client_options.alpn_protocols = {dataplane::kChatAlpn};
  client_options.pin = true;
  client_options.pinned_sha256 = (*cert)->leaf_sha256();
  absl::StatusOr<std::shared_ptr<tls::ClientContext>> client_ctx =
      tls::ClientContext::create(client_options);
  if (!client_ctx.ok()) tls::die(client_ctx.status().ToString());
  tls::Clients clients(*client_ctx, batch);
  pthread_setname_np(pthread_self(), "tls-server");
  std::unique_ptr<tls::ClientThread> client_thread;
  if (profile) {
    client_thread = std::make_unique<tls::ClientThread>();
    clients.thread = client_thread.get();
  }

  std::printf(
      "TLS 1.3 full handshakes, server side, one core: %d handshakes x %d rounds, "
      "batch %d\n",
      handshakes, rounds, batch);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) {
    std::printf("load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  }

  // Warm-up (page faults, lazy BoringSSL tables), not reported.
  (void)tls::crypto_bound((*cert)->private_key(), std::max(handshakes / 10, 1));
  tls::Checks checks;
  (void)tls::platform_handshakes(*server, clients, std::max(handshakes / 10, batch), batch,
                                 &checks);
  if (checks.group != SSL_CURVE_X25519) {
    tls::die("the handshake did not use an X25519 key share (group " +
             std::to_string(checks.group) + ")");
  }
  std::printf("negotiated: X25519, ECDSA P-256 certificate, %s, ALPN %s, not resumed\n",
              checks.cipher.c_str(), checks.alpn.c_str());
  if (profile) {
    Spread rate;
    for (int r = 0; r < rounds; ++r) {
      const tls::Timer p = tls::platform_handshakes(*server, clients, handshakes, batch, &checks);
      rate.values.push_back(handshakes / p.cpu_s);
    }
    print_spread("server, platform/tls (profile)", rate, "handshakes/s per core");
    return 0;
  }
  std::printf("\n%5s %11s %11s %11s %11s %7s %7s %9s\n", "round", "bound/s", "platform/s",
              "no-ticket/s", "dataplane/s", "ratio%", "dp%", "cpu/wall");
  Spread bound, platform, no_ticket, dataplane_rate, ratio, dp_ratio;
  for (int r = 0; r < rounds; ++r) {
    // Interleaved, so that a change in the machine's load touches every figure of a round alike.
    const tls::Timer b = tls::crypto_bound((*cert)->private_key(), handshakes);
    const tls::Timer p = tls::platform_handshakes(*server, clients, handshakes, batch, &checks);
    const tls::Timer n =
        tls::platform_handshakes(*server_no_ticket, clients, handshakes, batch, &checks);
    const tls::Timer d = dataplane::dataplane_handshakes(*server, clients, handshakes, batch);
    bound.values.push_back(handshakes / b.cpu_s);
    platform.values.push_back(handshakes / p.cpu_s);
    no_ticket.values.push_back(handshakes / n.cpu_s);
    dataplane_rate.values.push_back(handshakes / d.cpu_s);
    ratio.values.push_back(100.0 * platform.values.back() / bound.values.back());
    dp_ratio.values.push_back(100.0 * dataplane_rate.values.back() / bound.values.back());
    std::printf(
        "%5d %11.0f %11.0f %11.0f %11.0f %7.1f %7.1f %9.2f\n", r + 1, bound.values.back(),
        platform.values.back(), no_ticket.values.back(), dataplane_rate.values.back(),
        ratio.values.back(), dp_ratio.values.back(),
        (b.cpu_s + p.cpu_s + n.cpu_s + d.cpu_s) / (b.wall_s + p.wall_s + n.wall_s + d.wall_s));
    std::fflush(stdout);
  }
  std::printf("\n");
  print_spread("crypto bound", bound, "handshakes/s");
  print_spread("server, platform/tls", platform, "handshakes/s per core");
  print_spread("server, platform/tls, no ticket", no_ticket, "handshakes/s per core");
  print_spread("server, dataplane TlsLayer", dataplane_rate, "handshakes/s per core");
  std::printf("%-34s median %9.1f  min %9.1f  max %9.1f %%\n", "platform/tls / bound",
              ratio.median(), ratio.min(), ratio.max());
  std::printf("%-34s median %9.1f  min %9.1f  max %9.1f %%\n", "dataplane / bound",
              dp_ratio.median(), dp_ratio.min(), dp_ratio.max());
  std::printf("per handshake: bound %.1f us, platform/tls %.1f us, dataplane %.1f us (CPU)\n",
              1e6 / bound.median(), 1e6 / platform.median(), 1e6 / dataplane_rate.median());
  if (getloadavg(load, 3) == 3) {
    std::printf("load average at end: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  }
  return 0;
}
