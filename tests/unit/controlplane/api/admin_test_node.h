// Test harness for the admin API services: a Node (router + API keys + system endpoints + groups
// over MemoryTables behind a fault-injecting wrapper) served by a real http::Server on a loop
// thread, and a blocking HTTP client. The test thread configures a TestEnv before the server
// starts and talks to the node over HTTP only.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/api/api_keys.h"
#include "controlplane/api/groups.h"
#include "controlplane/api/router.h"
#include "controlplane/api/system_api.h"
#include "controlplane/registration/auth_names.h"
#include "controlplane/storage/tables.h"
#include "platform/assert/assert.h"
#include "tests/unit/blocking_socket.h"
#include "tests/unit/controlplane/http/loop_server.h"

namespace herald::api::testing {

// Tables whose apply or barrier can be made to fail from the test thread.
class FlakyTables final : public storage::Tables {
 public:
  explicit FlakyTables(storage::MemoryTables::Defer defer) : inner_(std::move(defer)) {}
  absl::Status apply(std::span<const storage::Mutation> batch) override {
    if (fail_apply.load()) return absl::ResourceExhaustedError("injected: apply refused");
    return inner_.apply(batch);
  }
  const std::string* find(storage::TableId t, std::string_view key) const override {
    return inner_.find(t, key);
  }
  void scan(storage::TableId t, std::string_view from, const storage::ScanFn& fn) const override {
    inner_.scan(t, from, fn);
  }
  size_t size(storage::TableId t) const override { return inner_.size(t); }
  void barrier(storage::BarrierCallback done) override {
    const bool fail = fail_barrier.load();
    inner_.barrier([done = std::move(done), fail](const absl::Status& s) {
      done(fail ? absl::DataLossError("injected: log write failed") : s);
    });
  }
  const absl::Status& status() const override { return inner_.status(); }
  storage::MemoryTables& inner() { return inner_; }

  std::atomic<bool> fail_apply{false};
  std::atomic<bool> fail_barrier{false};

 private:
  storage::MemoryTables inner_;
};

struct TestEnv {
  std::string data_dir;
  uint32_t max_group_members = 3;
  std::set<std::pair<uint64_t, uint64_t>> accounts;  // set before the server starts
  std::atomic<bool> dataplane_connected{true};
  std::atomic<bool> hold_barriers{false};  // barrier callbacks wait for GET /__release
  FlakyTables* tables = nullptr;           // set by the Node

  std::mutex mu;
  std::vector<std::pair<uint64_t, std::vector<registration::AccountId>>> pushes;
  std::vector<std::pair<uint64_t, std::vector<registration::AccountId>>> take_pushes() {
    std::lock_guard<std::mutex> lock(mu);
    return std::exchange(pushes, {});
  }
};
inline TestEnv* g_env = nullptr;

class Node final : public http::Handler {
 public:
  // Built on the test thread, before the loop thread starts (LoopServer's member).
  Node()
      : tables_([this](std::function<void()> fn) { deferred_.push_back(std::move(fn)); }),
        keys_(tables_, [] { return uint64_t{1'700'000'000'000}; }),
        router_(&keys_),
        system_(tables_, sources()),
        groups_(tables_, groups_options()) {
    g_env->tables = &tables_;
    const absl::Status s = keys_.ensure_bootstrap_key(g_env->data_dir);
    HERALD_CHECK(s.ok(), "bootstrap key");
    keys_.add_routes(router_);
    system_.add_routes(router_);
    groups_.add_routes(router_);
  }

  void handle(const http::Request& request, std::string_view body,
              http::Responder& responder) override {
    if (request.path() == "/__release") {
      responder.respond(200, "text/plain", "released");
      drain();
      return;
    }
    if (request.path() == "/__group_rows") {
      responder.respond(200, "text/plain",
                        std::to_string(tables_.size(storage::TableId::kGroups)) + " " +
                            std::to_string(tables_.size(storage::TableId::kGroupMembers)));
      return;
    }
    router_.handle(request, body, responder);
    // The barrier has returned by now: running its callback here is "later, outside the call".
    if (!g_env->hold_barriers.load()) drain();
  }

 private:
  static SystemSources sources() {
    SystemSources s;
    s.version = "1.2.3-test";
    s.node_id = 7;
    s.node_name = "node-a";
    s.backend = "kernel";
    s.workers = 2;
    s.started_unix_ms = 1'700'000'000'000;
    s.roles = {"controlplane", "dataplane"};
    s.listeners = {{"admin", "127.0.0.1", 8080}, {"public", "0.0.0.0", 8443}};
    s.uptime_ms = [] { return uint64_t{42'500}; };
    s.config_revision = [] { return uint64_t{9}; };
    s.dataplane_connected = [] { return g_env->dataplane_connected.load(); };
    s.read_counters = [](counters::Snapshot* out) {
      out->metrics.clear();
      counters::Metric rx;
      rx.name = "tcp.rx_packets";
      rx.kind = counters::Kind::kCounter;
      rx.counter = 42;
      out->metrics.push_back(rx);
      return absl::OkStatus();
    };
    return s;
  }
  static GroupsOptions groups_options() {
    GroupsOptions o;
    o.max_group_members = g_env->max_group_members;
    o.account_exists = [](const registration::AccountId& id) {
      return g_env->accounts.count({id.hi, id.lo}) != 0;
    };
    o.on_membership_change = [](uint64_t group, const std::vector<registration::AccountId>& m) {
      std::lock_guard<std::mutex> lock(g_env->mu);
      g_env->pushes.emplace_back(group, m);
    };
    o.now_unix_ms = [] { return uint64_t{1'700'000'000'123}; };
    return o;
  }
  void drain() {
    while (!deferred_.empty()) {
      auto fn = std::move(deferred_.front());
      deferred_.pop_front();
      fn();
    }
  }

  std::deque<std::function<void()>> deferred_;
  FlakyTables tables_;
  ApiKeys keys_;
  Router router_;
  SystemApi system_;
  Groups groups_;
};

using NodeServer = http::testing::LoopServer<Node>;

inline http::ServerLimits test_limits() {
  return http::ServerLimits{};
}

struct Reply {
  int status = 0;  // 0: no complete response
  std::string head;
  std::string body;
  std::string header(std::string_view name) const {
    const std::string needle = "\r\n" + std::string(name) + ": ";
    const size_t at = head.find(needle);
    if (at == std::string::npos) return "";
    const size_t from = at + needle.size();
    return head.substr(from, head.find("\r\n", from) - from);
  }
};

inline int connect_to(uint16_t port) {
  return herald::testing::connect_loopback(port);
}

inline void send_request(int fd, std::string_view method, std::string_view path,
                         std::string_view key, std::string_view body) {
  std::string req = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n";
  if (!key.empty()) req += "Authorization: Bearer " + std::string(key) + "\r\n";
  if (!body.empty() || method == "POST") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n";
  req += body;
  (void)herald::testing::send_all_retrying(fd, req);
}

inline Reply read_reply(int fd) {
  Reply r;
  std::string buffer;
  char chunk[4096];
  size_t end;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = herald::testing::recv_retrying(fd, chunk, sizeof(chunk));
    if (n <= 0) return r;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  r.head = buffer.substr(0, end + 4);
  buffer.erase(0, end + 4);
  const std::string cl = r.header("Content-Length");
  const size_t length = cl.empty() ? 0 : std::stoul(cl);
  while (buffer.size() < length) {
    const ssize_t n = herald::testing::recv_retrying(fd, chunk, sizeof(chunk));
    if (n <= 0) return r;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  r.body = buffer.substr(0, length);
  r.status = std::stoi(r.head.substr(9, 3));
  return r;
}

// One request on its own connection.
inline Reply call(uint16_t port, std::string_view method, std::string_view path,
                  std::string_view key = {}, std::string_view body = {}) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  send_request(fd, method, path, key, body);
  Reply r = read_reply(fd);
  ::close(fd);
  return r;
}

// The value of a string field in a flat JSON object ("key": "value"), or "".
inline std::string json_string(const std::string& json, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":";
  size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (at >= json.size() || json[at] != '"') return "";
  return json.substr(at + 1, json.find('"', at + 1) - at - 1);
}

// `json` without the spaces the generator puts after ':' and ',' (for substring checks; the
// bodies tested hold no strings with ": ").
inline std::string compact(std::string json) {
  std::string out;
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] == ' ' && i > 0 && (json[i - 1] == ':' || json[i - 1] == ',')) continue;
    out.push_back(json[i]);
  }
  return out;
}

inline std::string read_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char chunk[4096];
  for (ssize_t n; (n = ::read(fd, chunk, sizeof(chunk))) > 0;) {
    out.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// A fresh directory under $TMPDIR (or /tmp), removed with its files by the destructor.
class TempDir {
 public:
  TempDir() {
    const char* base = ::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/herald-admin-XXXXXX";
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "";
  }
  ~TempDir() {
    for (const char* name : {"admin.key", "admin.key.tmp"}) {
      (void)::unlink((path_ + "/" + name).c_str());
    }
    (void)::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The bootstrap admin key the node wrote.
inline std::string admin_key(const TestEnv& env) {
  std::string key = read_file(env.data_dir + "/admin.key");
  while (!key.empty() && key.back() == '\n') key.pop_back();
  return key;
}

}  // namespace herald::api::testing
