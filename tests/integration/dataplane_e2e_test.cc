// End to end over real processes and TLS sockets: herald-controlplane and herald-dataplane
// (two workers) on loopback, accounts registered through the public HTTPS API (codes read from
// the log gateway's sms.log) or provisioned through the admin API, clients logging in with their
// session tokens. Checks the chat semantics of docs/PROTOCOL.md as a client sees them (1:1,
// offline drain, dedup, replaced sessions, group fan-out and membership changes, linked devices
// and their revocation, a slow consumer cut off without losing an acknowledged message), and
// herald-chat as a person runs it.
//
//   dataplane_e2e_test <herald-controlplane> <herald-dataplane> <herald-chat> [dpdk:NS:IF:ADDR]
//
// With the fourth argument the same tests run against `backend: dpdk`: the dataplane starts
// inside network namespace NS on net_af_packet over its veth end IF with Herald's own TCP/IP
// stack at ADDR; the control plane and this process stay in the caller's namespace, on the
// veth's other end (dataplane_dpdk_e2e.py makes the namespace and the veth pair). IPC is a
// unix socket path and the counters segment a file, so both cross the namespaces.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "platform/auth/account_id.h"
#include "platform/auth/session_token.h"
#include "tests/unit/controlplane/api/http_client.h"
#include "tools/client/chat_client.h"
#include "tools/client/public_api.h"

namespace herald::tools {
namespace {

std::string g_controlplane;
std::string g_dataplane;
std::string g_herald_chat;

// Backend dpdk (empty namespace: the kernel backend on loopback).
struct DpdkMode {
  std::string netns;    // where the dataplane runs
  std::string iface;    // its af_packet port, in that namespace
  std::string address;  // the stack's IPv4 address
};
DpdkMode g_dpdk;

bool dpdk() {
  return !g_dpdk.netns.empty();
}

// Where clients reach the chat port.
std::string chat_host() {
  return dpdk() ? g_dpdk.address : "127.0.0.1";
}

// The transport's "send queue full" counter (the cut-off below the session): the kernel
// backend's and the DPDK backend's transports publish it under their own names.
const char* queue_full_counter() {
  return dpdk() ? "dp.dpdk.transport.send_queue_full" : "dp.transport.queue_full";
}

uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t length = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
  close(fd);
  return ntohs(a.sin_port);
}

bool port_open(uint16_t port, const std::string& host = "127.0.0.1") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A logged-in test user: its token, account and device.
struct User {
  std::string phone;
  std::vector<uint8_t> token;
  wire::AccountId account;
  uint32_t device = 0;
  std::string account_text;  // as the APIs print it
  std::string credential;    // the device's (for linking, new sessions)
};

// Every value of a string or number field named `name` in a JSON body, in order (the server's
// own generated JSON: no escapes in the values the tests read).
std::vector<std::string> json_values(const std::string& json, std::string_view name) {
  std::vector<std::string> out;
  const std::string key = "\"" + std::string(name) + "\":";
  for (size_t at = json.find(key); at != std::string::npos; at = json.find(key, at + 1)) {
    size_t from = at + key.size();
    while (from < json.size() && json[from] == ' ') ++from;
    if (from < json.size() && json[from] == '"') {
      const size_t end = json.find('"', from + 1);
      out.push_back(json.substr(from + 1, end - from - 1));
    } else {
      out.push_back(json.substr(from, json.find_first_of(",}] ", from) - from));
    }
  }
  return out;
}

// A node: both processes on loopback ports, in a temporary directory. `limits` is the config's
// limits table as JSON (empty: the defaults).
class Node {
 public:
  explicit Node(const std::string& limits = {}) {
    char tmpl[] = "/tmp/herald-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    data_dir_ = dir_ + "/data";
    admin_port_ = free_port();
    public_port_ = free_port();
    chat_port_ = free_port();
    if (!dpdk()) {
      std::ofstream(dir_ + "/node.json")
          << "{\"controlplane\": {\"ipc_socket_path\": \"" << dir_
          << "/ipc.sock\", \"admin_port\": " << admin_port_
          << ", \"public_address\": \"127.0.0.1\", \"public_port\": " << public_port_
          << "}, \"dataplane\": {\"listen_address\": \"127.0.0.1\", \"chat_port\": " << chat_port_
          << ", \"workers\": 2, \"poll_mode\": \"blocking\"}"
          << (limits.empty() ? std::string() : ", \"limits\": " + limits) << "}";
      return;
    }
    // One worker (this machine has 2 cores), adaptive polling, no huge pages; the mempool is
    // sized from max_connections, so that limit is kept small next to the test's own limits.
    std::string all_limits = "{\"max_connections\": 1000";
    all_limits += limits.empty() ? std::string("}") : ", " + limits.substr(limits.find('{') + 1);
    std::ofstream(dir_ + "/node.json")
        << "{\"controlplane\": {\"ipc_socket_path\": \"" << dir_
        << "/ipc.sock\", \"admin_port\": " << admin_port_
        << ", \"public_address\": \"127.0.0.1\", \"public_port\": " << public_port_
        << "}, \"dataplane\": {\"backend\": \"dpdk\", \"listen_address\": \"0.0.0.0\", "
        << "\"chat_port\": " << chat_port_
        << ", \"workers\": 1, \"poll_mode\": \"adaptive\", \"adaptive_idle_polls\": 200, "
        << "\"dpdk\": {\"ports\": [\"net_af_packet0,iface="
        << g_dpdk.iface
        // The EAL file prefix is the namespace's name: unique per run, reused by the run's
        // dataplanes one after another (the wrapper removes its runtime directory at the end).
        << "\"], \"huge_pages\": false, \"memory_mb\": 256, \"file_prefix\": \"" << g_dpdk.netns
        << "\", \"address\": \"" << g_dpdk.address
        << "\", \"prefix_length\": 24, \"rx_descriptors\": 256, \"tx_descriptors\": 256, "
        << "\"mempool_cache_size\": 32}}, \"limits\": " << all_limits << "}";
  }
  ~Node() {
    const bool dataplane_clean = stop(dataplane_);
    stop(controlplane_);
    std::error_code ignored;
    if (dpdk()) {
      // DPDK's shutdown (ports, mempool, EAL) is on this path too: a clean exit on SIGTERM.
      EXPECT_TRUE(dataplane_clean) << "herald-dataplane did not exit 0 on SIGTERM within 5 s";
      // The dpdk run is also the sanitizer run of Herald's own stack under real traffic:
      // a sanitizer build reports into the processes' logs (herald_node.py checks the same).
      for (const char* log : {"/controlplane.log", "/dataplane.log"}) {
        std::ifstream in(dir_ + log);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        for (const char* marker :
             {"runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"}) {
          EXPECT_EQ(text.find(marker), std::string::npos) << log << ": " << marker;
        }
      }
    }
    if (::testing::Test::HasFailure()) {
      for (const char* log : {"/controlplane.log", "/dataplane.log"}) {
        std::ifstream in(dir_ + log);
        std::string text((std::istreambuf_iterator<char>(in)), {});
        std::fprintf(stderr, "--- %s (last 4000 bytes)\n%s\n", log,
                     text.substr(text.size() > 4000 ? text.size() - 4000 : 0).c_str());
      }
    }
    std::filesystem::remove_all(dir_, ignored);
  }

  void start_controlplane() { controlplane_ = spawn(g_controlplane, "controlplane.log"); }
  void start_dataplane() {
    dataplane_ = spawn(g_dataplane, "dataplane.log", dpdk() ? g_dpdk.netns : std::string());
  }
  void kill_dataplane() {
    ::kill(dataplane_, SIGKILL);
    waitpid(dataplane_, nullptr, 0);
    dataplane_ = -1;
  }
  // Both listening.
  void wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!(port_open(public_port_) && port_open(chat_port_, chat_host()))) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the node did not start";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  const std::string& dir() const { return dir_; }
  const std::string& data_dir() const { return data_dir_; }
  uint16_t public_port() const { return public_port_; }
  uint16_t chat_port() const { return chat_port_; }

  TlsStreamOptions public_api() const {
    auto pem = read_pem_file(data_dir_ + "/tls/public.crt");
    return {.host = "127.0.0.1", .port = public_port_, .trust = Trust::pinned(*pem)};
  }
  TlsStreamOptions chat() const {
    auto pem = read_pem_file(data_dir_ + "/tls/chat.crt");
    return {.host = chat_host(), .port = chat_port_, .trust = Trust::pinned(*pem)};
  }

  // Registers `phone` (code from sms.log) and fetches a session token.
  User register_user(const std::string& phone) {
    User user;
    user.phone = phone;
    auto expires = request_code(public_api(), phone);
    EXPECT_TRUE(expires.ok()) << expires.status();
    auto code = code_from_sms_log(data_dir_ + "/sms.log", phone);
    EXPECT_TRUE(code.ok()) << code.status();
    auto reg = verify_code(public_api(), phone, *code, "e2e");
    EXPECT_TRUE(reg.ok()) << reg.status();
    auto session = create_session(public_api(), reg->credential);
    EXPECT_TRUE(session.ok()) << session.status();
    user.token = session->token;
    const auto id = auth::parse_account_id(reg->account_id);
    EXPECT_TRUE(id.has_value()) << reg->account_id;
    user.account = wire::AccountId(id->hi, id->lo);
    user.device = reg->device_id;
    user.account_text = reg->account_id;
    user.credential = reg->credential;
    return user;
  }

  // The admin API (plain HTTP on loopback) with the node's first admin key.
  api::testing::HttpResponse admin(const std::string& method, const std::string& path,
                                   const std::string& body = {}) {
    std::ifstream in(data_dir_ + "/admin.key");
    std::string key;
    in >> key;
    return api::testing::http_request(admin_port_, method, path, body,
                                      "Authorization: Bearer " + key + "\r\n");
  }

  // Accounts through POST /v1/accounts/provision: each with its device 1 and a session token.
  std::vector<User> provision(const std::vector<std::string>& phones) {
    std::string body = "{\"phones\": [";
    for (size_t i = 0; i < phones.size(); ++i) body += (i ? ", \"" : "\"") + phones[i] + "\"";
    body += "], \"device_name\": \"e2e\"}";
    const api::testing::HttpResponse r = admin("POST", "/v1/accounts/provision", body);
    EXPECT_EQ(r.status, 200) << r.body;
    const std::vector<std::string> ids = json_values(r.body, "account_id");
    const std::vector<std::string> devices = json_values(r.body, "device_id");
    const std::vector<std::string> tokens = json_values(r.body, "token");
    const std::vector<std::string> credentials = json_values(r.body, "credential");
    std::vector<User> users;
    if (ids.size() != phones.size() || tokens.size() != phones.size()) {
      ADD_FAILURE() << "provisioned " << ids.size() << " of " << phones.size() << ": " << r.body;
      return users;
    }
    for (size_t i = 0; i < phones.size(); ++i) {
      User user;
      user.phone = phones[i];
      const auto token = auth::parse_token_text(tokens[i]);
      EXPECT_TRUE(token.has_value()) << tokens[i];
      if (token) user.token.assign(token->begin(), token->end());
      const auto id = auth::parse_account_id(ids[i]);
      EXPECT_TRUE(id.has_value()) << ids[i];
      if (id) user.account = wire::AccountId(id->hi, id->lo);
      user.device = static_cast<uint32_t>(std::stoul(devices[i]));
      user.account_text = ids[i];
      user.credential = credentials[i];
      users.push_back(std::move(user));
    }
    return users;
  }

  // A logged-in client. The session key may reach the dataplane a moment after the token was
  // issued (AuthError UnknownKey): retried, as a client does.
  std::unique_ptr<ChatClient> login(const User& user, ChatClientOptions options = {}) {
    options.stream = chat();
    for (int attempt = 0; attempt < 50; ++attempt) {
      auto client = ChatClient::connect(options);
      EXPECT_TRUE(client.ok()) << client.status();
      if (!client.ok()) return nullptr;
      auto ok = (*client)->login(user.token);
      if (ok.ok()) return std::move(*client);
      if (ok.status().message().find("UnknownKey") == std::string_view::npos) {
        ADD_FAILURE() << ok.status();
        return nullptr;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "login kept failing with UnknownKey";
    return nullptr;
  }

 private:
  // Forks and execs `binary` with its output in `log`, inside network namespace `netns` when
  // one is named (as `ip netns exec` does: setns to /var/run/netns/<name>). The child dies
  // with this process (PR_SET_PDEATHSIG), so a test binary that is killed leaves no node behind.
  pid_t spawn(const std::string& binary, const char* log, const std::string& netns = {}) {
    const std::string netns_path = "/var/run/netns/" + netns;
    const std::string config = dir_ + "/node.json";
    const std::string log_path = dir_ + "/" + log;
    std::vector<std::string> args = {binary, "--config", config, "--data-dir", data_dir_};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      if (!netns.empty()) {
        const int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
          std::fprintf(stderr, "setns %s: %s\n", netns_path.c_str(), strerror(errno));
          _exit(126);
        }
      }
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    EXPECT_GT(pid, 0);
    return pid;
  }
  // SIGTERM, then SIGKILL after 5 s; true when the process exited by itself with status 0.
  static bool stop(pid_t pid) {
    if (pid <= 0) return true;
    ::kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid)
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return false;
  }

  std::string dir_;
  std::string data_dir_;
  uint16_t admin_port_ = 0;
  uint16_t public_port_ = 0;
  uint16_t chat_port_ = 0;
  pid_t controlplane_ = -1;
  pid_t dataplane_ = -1;
};

class DataplaneE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    node_.start_controlplane();
    node_.start_dataplane();
    node_.wait_ready();
  }
  Node node_;
};

// The next Deliver within the timeout (other frames are kept for later).
wire::DeliverT next_deliver(ChatClient& c) {
  auto f = c.wait_for(wire::Payload::Deliver, 10'000);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f->payload.AsDeliver() : wire::DeliverT{};
}

TEST_F(DataplaneE2E, OneToOneOnlineWithReceipt) {
  const User alice = node_.register_user("+15550000001");
  const User bob = node_.register_user("+15550000002");
  auto a = node_.login(alice);
  auto b = node_.login(bob);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  ASSERT_TRUE(a->send_to_account(bob.account, 1, bytes_of("hello bob")).ok());
  const wire::DeliverT d = next_deliver(*b);
  EXPECT_EQ(std::string(d.body.begin(), d.body.end()), "hello bob");
  ASSERT_NE(d.sender, nullptr);
  EXPECT_EQ(d.sender->account().lo(), alice.account.lo());
  EXPECT_EQ(d.sender->device(), alice.device);
  ASSERT_NE(d.server_msg_id, nullptr);
  ASSERT_TRUE(b->ack(std::span<const wire::ServerMsgId>(d.server_msg_id.get(), 1)).ok());
  auto ack = a->wait_for(wire::Payload::ServerAck, 10'000);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->payload.AsServerAck()->client_msg_id, 1u);
  EXPECT_EQ(ack->payload.AsServerAck()->server_msg_id->lo(), d.server_msg_id->lo());

  // A delivered receipt travels back to the sender.
  ASSERT_TRUE(b->receipt(wire::ReceiptKind::Delivered, alice.account,
                         std::span<const wire::ServerMsgId>(d.server_msg_id.get(), 1))
                  .ok());
  auto receipt = a->wait_for(wire::Payload::Receipt, 10'000);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_EQ(receipt->payload.AsReceipt()->kind, wire::ReceiptKind::Delivered);
}

TEST_F(DataplaneE2E, OfflineMessagesDrainInOrderOnLogin) {
  const User alice = node_.register_user("+15550000011");
  const User bob = node_.register_user("+15550000012");
  auto a = node_.login(alice);
  ASSERT_NE(a, nullptr);
  constexpr int kMessages = 20;
  for (int i = 1; i <= kMessages; ++i) {
    const std::string body = "offline " + std::to_string(i);
    ASSERT_TRUE(a->send_to_account(bob.account, static_cast<uint64_t>(i), bytes_of(body)).ok());
  }
  // Bob is offline: each ServerAck means durable in the store.
  for (int i = 1; i <= kMessages; ++i) {
    auto ack = a->wait_for(wire::Payload::ServerAck, 10'000);
    ASSERT_TRUE(ack.ok()) << "message " << i << ": " << ack.status();
  }
  auto b = node_.login(bob);
  ASSERT_NE(b, nullptr);
  for (int i = 1; i <= kMessages; ++i) {
    const wire::DeliverT d = next_deliver(*b);
    ASSERT_EQ(std::string(d.body.begin(), d.body.end()), "offline " + std::to_string(i));
    ASSERT_TRUE(b->ack(std::span<const wire::ServerMsgId>(d.server_msg_id.get(), 1)).ok());
  }
  b->close();
  // Acknowledged entries are gone: a new login gets nothing again.
  auto again = node_.login(bob);
  ASSERT_NE(again, nullptr);
  auto nothing = again->wait_for(wire::Payload::Deliver, 1000);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kDeadlineExceeded) << nothing.status();
}

TEST_F(DataplaneE2E, ResendIsNotDeliveredTwice) {
  const User alice = node_.register_user("+15550000021");
  const User bob = node_.register_user("+15550000022");
  auto a = node_.login(alice);
  auto b = node_.login(bob);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->send_to_account(bob.account, 7, bytes_of("once")).ok());
  const wire::DeliverT d = next_deliver(*b);
  ASSERT_TRUE(b->ack(std::span<const wire::ServerMsgId>(d.server_msg_id.get(), 1)).ok());
  auto first = a->wait_for(wire::Payload::ServerAck, 10'000);
  ASSERT_TRUE(first.ok()) << first.status();
  // The same client_msg_id again (a client retrying after a lost ServerAck).
  ASSERT_TRUE(a->send_to_account(bob.account, 7, bytes_of("once")).ok());
  auto second = a->wait_for(wire::Payload::ServerAck, 10'000);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->payload.AsServerAck()->server_msg_id->lo(),
            first->payload.AsServerAck()->server_msg_id->lo());
  auto dup = b->wait_for(wire::Payload::Deliver, 1000);
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kDeadlineExceeded) << "delivered twice";
}

TEST_F(DataplaneE2E, NewLoginReplacesTheOldSession) {
  const User bob = node_.register_user("+15550000031");
  auto first = node_.login(bob);
  ASSERT_NE(first, nullptr);
  auto second = node_.login(bob);
  ASSERT_NE(second, nullptr);
  auto error = first->wait_for(wire::Payload::Error, 10'000);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->payload.AsError()->code, wire::ErrorCode::SessionReplaced);
  EXPECT_TRUE(error->payload.AsError()->fatal);
  // The new session works.
  ASSERT_TRUE(second->ping(5).ok());
  auto pong = second->wait_for(wire::Payload::Pong, 10'000);
  EXPECT_TRUE(pong.ok()) << pong.status();
}

TEST_F(DataplaneE2E, BadTokensAndGarbageAreRefused) {
  auto client = ChatClient::connect({.stream = node_.chat()});
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<uint8_t> forged(73, 0x42);
  auto refused = (*client)->login(forged);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << refused.status();

  auto garbage = ChatClient::connect({.stream = node_.chat()});
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  const uint8_t junk[] = {12, 0, 0, 0, 'n', 'o', 't', ' ', 'a', ' ', 'f', 'r', 'a', 'm', 'e', '!'};
  ASSERT_TRUE((*garbage)->send_raw(junk).ok());
  auto error = (*garbage)->wait_for(wire::Payload::Error, 10'000);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_TRUE(error->payload.AsError()->fatal);
}

// Nothing of `type` arrives within `quiet_ms` (frames of other types are kept for later).
void expect_none(ChatClient& c, wire::Payload type, uint32_t quiet_ms, const char* what) {
  auto f = c.wait_for(type, quiet_ms);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDeadlineExceeded) << what;
}

std::string body_of(const wire::DeliverT& d) {
  return std::string(d.body.begin(), d.body.end());
}

// The next Deliver, acknowledged.
wire::DeliverT take(ChatClient& c) {
  wire::DeliverT d = next_deliver(c);
  if (d.server_msg_id != nullptr) {
    EXPECT_TRUE(c.ack(std::span<const wire::ServerMsgId>(d.server_msg_id.get(), 1)).ok());
  }
  return d;
}

// Sends to the group until the dataplane knows the sender is a member (the membership push
// goes out as the admin API answers, over the IPC ring): NotGroupMember is retried, with the
// same client_msg_id (a refused message is forgotten by the dedup window).
void send_to_group_when_member(ChatClient& c, const wire::GroupId& group, uint64_t client_msg_id,
                               std::string_view body) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    ASSERT_TRUE(c.send_to_group(group, client_msg_id, bytes_of(body)).ok());
    auto f = c.next(10'000);
    ASSERT_TRUE(f.ok() && f->has_value()) << "no answer to a group message";
    if ((*f)->payload.type == wire::Payload::ServerAck) {
      EXPECT_EQ((*f)->payload.AsServerAck()->client_msg_id, client_msg_id);
      return;
    }
    ASSERT_EQ((*f)->payload.type, wire::Payload::Error)
        << wire::EnumNamePayload((*f)->payload.type);
    ASSERT_EQ((*f)->payload.AsError()->code, wire::ErrorCode::NotGroupMember);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "the group never reached the dataplane";
}

TEST_F(DataplaneE2E, GroupFanOutAndMembershipChanges) {
  const std::vector<User> users = node_.provision({"+15550000051", "+15550000052", "+15550000053"});
  ASSERT_EQ(users.size(), 3u);
  std::vector<std::unique_ptr<ChatClient>> clients;
  for (const User& u : users) {
    clients.push_back(node_.login(u));
    ASSERT_NE(clients.back(), nullptr);
  }
  const api::testing::HttpResponse created =
      node_.admin("POST", "/v1/groups",
                  "{\"name\": \"e2e\", \"members\": [\"" + users[0].account_text + "\", \"" +
                      users[1].account_text + "\", \"" + users[2].account_text + "\"]}");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string group_text = json_values(created.body, "group_id").at(0);
  const wire::GroupId group(0, std::stoull(group_text, nullptr, 16));

  // One message from member 0 reaches members 1 and 2 exactly once, and not its sender.
  send_to_group_when_member(*clients[0], group, 1, "to everyone");
  for (size_t i : {1, 2}) {
    const wire::DeliverT d = take(*clients[i]);
    EXPECT_EQ(body_of(d), "to everyone") << "member " << i;
    ASSERT_NE(d.sender, nullptr);
    EXPECT_EQ(d.sender->account().lo(), users[0].account.lo());
    EXPECT_EQ(d.to.type, wire::Recipient::ToGroup);
  }
  for (size_t i : {0, 1, 2})
    expect_none(*clients[i], wire::Payload::Deliver, 1000, "a second copy");

  // Member 2 is removed by the admin API: it stops receiving, the others still do.
  const api::testing::HttpResponse removed =
      node_.admin("DELETE", "/v1/groups/" + group_text + "/members/" + users[2].account_text);
  ASSERT_EQ(removed.status, 200) << removed.body;
  // The removed member's own message is refused once the push is in: that is the sign that
  // its worker has the new list (the other worker got the same push from the same commit).
  bool refused = false;
  for (uint64_t id = 100; id < 150 && !refused; ++id) {
    ASSERT_TRUE(clients[2]->send_to_group(group, id, bytes_of("still here?")).ok());
    auto f = clients[2]->next(10'000);
    ASSERT_TRUE(f.ok() && f->has_value());
    if ((*f)->payload.type == wire::Payload::Error) {
      EXPECT_EQ((*f)->payload.AsError()->code, wire::ErrorCode::NotGroupMember);
      refused = true;
    } else {
      // Accepted before the push arrived: the others get it; take it out of their way.
      for (size_t i : {0, 1}) EXPECT_EQ(body_of(take(*clients[i])), "still here?");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(refused) << "the removal never reached the dataplane";
  // Pushes go to both workers together; give the other worker's ring the same moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  send_to_group_when_member(*clients[1], group, 2, "after the removal");
  EXPECT_EQ(body_of(take(*clients[0])), "after the removal");
  expect_none(*clients[2], wire::Payload::Deliver, 1500, "a removed member received");
  expect_none(*clients[1], wire::Payload::Deliver, 200, "the sender received its own");
}

TEST_F(DataplaneE2E, LinkedDeviceGetsMessagesCopiesAndIsRevoked) {
  const std::vector<User> users = node_.provision({"+15550000061", "+15550000062"});
  ASSERT_EQ(users.size(), 2u);
  const User& alice = users[0];
  const User& bob = users[1];
  // Alice links a second device over the public API, as a client would.
  auto code = link_code(node_.public_api(), alice.credential);
  ASSERT_TRUE(code.ok()) << code.status();
  auto linked = link_device(node_.public_api(), code->code, "alice-laptop");
  ASSERT_TRUE(linked.ok()) << linked.status();
  EXPECT_EQ(linked->account_id, alice.account_text);
  EXPECT_EQ(linked->device_id, 2u);
  // The code was one-time.
  auto again = link_device(node_.public_api(), code->code, "alice-tablet");
  EXPECT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("link_code_used"), std::string_view::npos)
      << again.status();
  auto session = create_session(node_.public_api(), linked->credential);
  ASSERT_TRUE(session.ok()) << session.status();
  User alice2 = alice;
  alice2.device = linked->device_id;
  alice2.token = session->token;
  alice2.credential = linked->credential;

  auto a1 = node_.login(alice);
  auto a2 = node_.login(alice2);
  auto b = node_.login(bob);
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(a2, nullptr);
  ASSERT_NE(b, nullptr);

  // To the account: both of Alice's devices, once each.
  ASSERT_TRUE(b->send_to_account(alice.account, 1, bytes_of("to both")).ok());
  for (ChatClient* c : {a1.get(), a2.get()}) {
    const wire::DeliverT d = take(*c);
    EXPECT_EQ(body_of(d), "to both");
  }
  // The sender's ServerAck comes once both devices acknowledged (or it was durable).
  auto ack = b->wait_for(wire::Payload::ServerAck, 10'000);
  ASSERT_TRUE(ack.ok()) << ack.status();

  // Alice's device 1 writes to Bob: Bob gets it, and device 2 gets a copy naming device 1.
  ASSERT_TRUE(a1->send_to_account(bob.account, 1, bytes_of("from my phone")).ok());
  EXPECT_EQ(body_of(take(*b)), "from my phone");
  const wire::DeliverT copy = take(*a2);
  EXPECT_EQ(body_of(copy), "from my phone");
  ASSERT_NE(copy.sender, nullptr);
  EXPECT_EQ(copy.sender->device(), alice.device);
  EXPECT_EQ(copy.to.type, wire::Recipient::ToAccount);
  ASSERT_TRUE(a1->wait_for(wire::Payload::ServerAck, 10'000).ok());
  expect_none(*a1, wire::Payload::Deliver, 500, "the sending device got its own message");
  for (ChatClient* c : {a2.get(), b.get()}) {
    expect_none(*c, wire::Payload::Deliver, 500, "a second copy");
  }

  // The admin revokes device 2: its session is closed and it receives nothing more.
  const api::testing::HttpResponse revoked =
      node_.admin("DELETE", "/v1/accounts/" + alice.account_text + "/devices/2");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  auto error = a2->wait_for(wire::Payload::Error, 10'000);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->payload.AsError()->code, wire::ErrorCode::SessionRevoked);
  EXPECT_TRUE(error->payload.AsError()->fatal);
  ASSERT_TRUE(b->send_to_account(alice.account, 2, bytes_of("only the phone")).ok());
  EXPECT_EQ(body_of(take(*a1)), "only the phone");
  ASSERT_TRUE(b->wait_for(wire::Payload::ServerAck, 10'000).ok());
  // Its token and credential are dead.
  auto relogin = ChatClient::connect({.stream = node_.chat()});
  ASSERT_TRUE(relogin.ok());
  EXPECT_FALSE((*relogin)->login(alice2.token).ok());
  EXPECT_FALSE(create_session(node_.public_api(), alice2.credential).ok());
}

// The TCP state of a client socket: ESTABLISHED while the server keeps the connection.
uint8_t tcp_state(int fd) {
  tcp_info info{};
  socklen_t length = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return 0;
  return info.tcpi_state;
}

// The sum of a counter over the dataplane's workers, from the admin API's GET /v1/stats; -1
// when the node does not publish it.
int64_t dataplane_counter(Node& node, const std::string& name) {
  const api::testing::HttpResponse r = node.admin("GET", "/v1/stats");
  if (r.status != 200) return -1;
  int64_t total = -1;
  const std::string key = "\"" + name;
  for (size_t at = r.body.find(key); at != std::string::npos; at = r.body.find(key, at + 1)) {
    // "dp.session.slow_consumer": N, or the same name with a per-worker label.
    const size_t colon = r.body.find(':', at);
    if (colon == std::string::npos) break;
    const char* from = r.body.c_str() + colon + 1;
    while (*from == ' ') ++from;
    if (*from < '0' || *from > '9') continue;
    total = (total < 0 ? 0 : total) + std::strtoll(from, nullptr, 10);
  }
  return total;
}

// Polls `name` (dataplane_counter) until it reaches `at_least`; false after 10 s.
bool wait_counter(Node& node, const std::string& name, int64_t at_least) {
  for (int i = 0; i < 200; ++i) {
    if (dataplane_counter(node, name) >= at_least) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A sends to B and goes offline; B's Delivered and Read receipts are kept in A's queue; A's next
// login gets both, in order, once; acknowledged, they do not come back at the login after.
TEST_F(DataplaneE2E, ReceiptsForAnOfflineSenderArriveAtItsNextLoginOnce) {
  const User alice = node_.register_user("+15550000091");
  const User bob = node_.register_user("+15550000092");
  ChatClientOptions every_copy;
  every_copy.stored_receipt_dedup_window = 0;  // what the server sends, repeats included
  auto a = node_.login(alice, every_copy);
  auto b = node_.login(bob);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->send_to_account(bob.account, 1, bytes_of("read me")).ok());
  const wire::DeliverT d = take(*b);
  ASSERT_NE(d.server_msg_id, nullptr);
  ASSERT_TRUE(a->wait_for(wire::Payload::ServerAck, 10'000).ok());
  a->close();
  // A's session is gone from the dataplane before B reads.
  ASSERT_TRUE(wait_counter(node_, "dp.router.detaches", 1));

  const std::span<const wire::ServerMsgId> about(d.server_msg_id.get(), 1);
  ASSERT_TRUE(b->receipt(wire::ReceiptKind::Delivered, alice.account, about).ok());
  ASSERT_TRUE(b->receipt(wire::ReceiptKind::Read, alice.account, about).ok());
  ASSERT_TRUE(wait_counter(node_, "dp.router.receipts_stored_devices", 2));
  EXPECT_EQ(dataplane_counter(node_, "dp.router.receipts_dropped"), 0);
  const int64_t acked_before =
      std::max<int64_t>(dataplane_counter(node_, "store.acked_entries"), 0);

  auto a2 = node_.login(alice, every_copy);
  ASSERT_NE(a2, nullptr);
  for (wire::ReceiptKind kind : {wire::ReceiptKind::Delivered, wire::ReceiptKind::Read}) {
    auto f = a2->wait_for(wire::Payload::Receipt, 10'000);
    ASSERT_TRUE(f.ok()) << wire::EnumNameReceiptKind(kind) << ": " << f.status();
    const wire::ReceiptT& r = *f->payload.AsReceipt();
    EXPECT_EQ(r.kind, kind);
    EXPECT_TRUE(r.stored);
    ASSERT_NE(r.from, nullptr);
    EXPECT_EQ(r.from->account().lo(), bob.account.lo());
    EXPECT_EQ(r.from->device(), bob.device);
    ASSERT_EQ(r.message_ids.size(), 1u);
    EXPECT_EQ(r.message_ids[0].lo(), d.server_msg_id->lo());
    EXPECT_EQ(r.message_ids[0].hi(), d.server_msg_id->hi());
  }
  expect_none(*a2, wire::Payload::Receipt, 1000, "a stored receipt came twice");
  EXPECT_EQ(a2->stored_receipts_acked(), 2u);  // the client library acked them
  // The acks reach the store (the next login may land on the other worker's ring).
  ASSERT_TRUE(wait_counter(node_, "store.acked_entries", acked_before + 2));
  a2->close();

  auto a3 = node_.login(alice, every_copy);
  ASSERT_NE(a3, nullptr);
  expect_none(*a3, wire::Payload::Receipt, 1500, "an acknowledged receipt came back");
  EXPECT_EQ(dataplane_counter(node_, "dp.router.receipts_drained"), 2);
}

class SlowConsumerE2E : public ::testing::Test {
 protected:
  // A small send queue (64 KiB, the transport's floor): the cut-off comes soon after the
  // kernel's socket buffers are full. Messages below are 8 KB, so the drain after the
  // reconnect must pace itself under it (a drain batch of 64 such messages would not fit).
  SlowConsumerE2E() : node_("{\"send_queue_bytes_per_session\": 65536}") {}
  void SetUp() override {
    node_.start_controlplane();
    node_.start_dataplane();
    node_.wait_ready();
  }
  Node node_;
};

TEST_F(SlowConsumerE2E, CutOffWithoutLosingAnAcknowledgedMessage) {
  const std::vector<User> users = node_.provision({"+15550000071", "+15550000072"});
  ASSERT_EQ(users.size(), 2u);
  auto sender = node_.login(users[0]);
  std::unique_ptr<ChatClient> reader;
  {
    // A receive buffer as small as the kernel allows, so the server's queue fills sooner.
    auto c = ChatClient::connect({.stream = node_.chat()});
    ASSERT_TRUE(c.ok()) << c.status();
    const int small = 4096;
    ASSERT_EQ(setsockopt((*c)->stream().fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    ASSERT_TRUE((*c)->login(users[1].token).ok());
    reader = std::move(*c);
  }
  ASSERT_NE(sender, nullptr);
  // The cut-off is counted by whichever layer meets the full queue first: the session
  // (plaintext frames, dp.session.slow_consumer) or the transport under it (TLS records,
  // dp.transport.queue_full).
  const auto cut_offs = [&] {
    const int64_t session = dataplane_counter(node_, "dp.session.slow_consumer");
    const int64_t transport = dataplane_counter(node_, queue_full_counter());
    return session < 0 || transport < 0 ? -1 : session + transport;
  };
  const int64_t cut_before = cut_offs();

  // The reader never reads. Send until its connection is gone; every message is acknowledged
  // (durable: the reader acknowledges nothing).
  const std::string filler(8'000, 'x');
  constexpr int kMaxMessages = 2000;  // far more than the socket buffers of one connection hold
  int sent = 0;
  while (sent < kMaxMessages && tcp_state(reader->stream().fd()) == TCP_ESTABLISHED) {
    ++sent;
    const std::string body = "m" + std::to_string(sent) + " " + filler;
    ASSERT_TRUE(
        sender->send_to_account(users[1].account, static_cast<uint64_t>(sent), bytes_of(body))
            .ok());
    auto ack = sender->wait_for(wire::Payload::ServerAck, 10'000);
    ASSERT_TRUE(ack.ok()) << "message " << sent << ": " << ack.status();
    ASSERT_EQ(ack->payload.AsServerAck()->client_msg_id, static_cast<uint64_t>(sent));
  }
  ASSERT_NE(tcp_state(reader->stream().fd()), TCP_ESTABLISHED)
      << "the slow consumer was never cut off after " << sent << " messages";
  // A few more while it is away: those go to the store only.
  for (int i = 0; i < 5; ++i) {
    ++sent;
    ASSERT_TRUE(sender
                    ->send_to_account(users[1].account, static_cast<uint64_t>(sent),
                                      bytes_of("m" + std::to_string(sent) + " late"))
                    .ok());
    ASSERT_TRUE(sender->wait_for(wire::Payload::ServerAck, 10'000).ok());
  }
  // The workers publish their counters every ~100 ms.
  int64_t cut_after = cut_offs();
  for (int i = 0; i < 50 && cut_before >= 0 && cut_after <= cut_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cut_after = cut_offs();
  }
  if (cut_before >= 0 && cut_after >= 0) {
    EXPECT_GT(cut_after, cut_before) << "the cut-off was not counted";
  } else {
    std::fprintf(stderr, "note: the dataplane's counters are not published in /v1/stats\n");
  }
  reader.reset();

  // On reconnect every acknowledged message comes, in order, each once.
  auto again = node_.login(users[1]);
  ASSERT_NE(again, nullptr);
  for (int i = 1; i <= sent; ++i) {
    const wire::DeliverT d = take(*again);
    const std::string body = body_of(d);
    ASSERT_EQ(body.substr(0, body.find(' ')), "m" + std::to_string(i)) << "of " << sent;
  }
  expect_none(*again, wire::Payload::Deliver, 1000, "a message came twice");
}

// The output of a shell command (herald-chat runs as a person would run it).
std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, p)) > 0) out.append(buffer, n);
  pclose(p);
  return out;
}

TEST_F(DataplaneE2E, HeraldChatRegistersAndChats) {
  const std::string common =
      g_herald_chat + " --public 127.0.0.1:" + std::to_string(node_.public_port()) + " --chat " +
      chat_host() + ":" + std::to_string(node_.chat_port()) + " --data-dir " + node_.data_dir() +
      " --profiles " + node_.dir() + "/profiles";
  const std::string sms = " --sms-log " + node_.data_dir() + "/sms.log";
  const std::string first = run(common + " register --phone +15550000041" + sms + " 2>&1");
  ASSERT_NE(first.find("registered +15550000041: account "), std::string::npos) << first;
  const std::string second = run(common + " register --phone +15550000042" + sms + " 2>&1");
  const size_t at = second.find("account ");
  ASSERT_NE(at, std::string::npos) << second;
  const std::string bob_account = second.substr(at + 8, 36);
  // Bob listens for 4 s; Alice sends one line meanwhile.
  std::string bob_out;
  std::thread bob([&] {
    bob_out = run("(sleep 4; echo /quit) | " + common + " chat --phone +15550000042 2>&1");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::string alice_out =
      run("(echo 'hi from herald-chat'; sleep 2; echo /quit) | " + common +
          " chat --phone +15550000041 --to " + bob_account + " 2>&1");
  bob.join();
  EXPECT_NE(alice_out.find("(sent #"), std::string::npos) << alice_out;
  EXPECT_NE(alice_out.find("(Delivered by " + bob_account + ")"), std::string::npos) << alice_out;
  EXPECT_NE(bob_out.find("] hi from herald-chat"), std::string::npos) << bob_out;
}

}  // namespace
}  // namespace herald::tools

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr,
                 "usage: %s <herald-controlplane> <herald-dataplane> <herald-chat> "
                 "[dpdk:<netns>:<iface>:<address>]\n",
                 argv[0]);
    return 2;
  }
  if (argc == 5) {
    const std::string spec = argv[4];
    const size_t a = spec.find(':', 5);
    const size_t b = a == std::string::npos ? a : spec.find(':', a + 1);
    if (spec.rfind("dpdk:", 0) != 0 || b == std::string::npos) {
      std::fprintf(stderr, "bad backend spec %s (want dpdk:<netns>:<iface>:<address>)\n",
                   spec.c_str());
      return 2;
    }
    herald::tools::g_dpdk = {.netns = spec.substr(5, a - 5),
                             .iface = spec.substr(a + 1, b - a - 1),
                             .address = spec.substr(b + 1)};
  }
  herald::tools::g_controlplane = argv[1];
  herald::tools::g_dataplane = argv[2];
  herald::tools::g_herald_chat = argv[3];
  signal(SIGPIPE, SIG_IGN);
  return RUN_ALL_TESTS();
}
