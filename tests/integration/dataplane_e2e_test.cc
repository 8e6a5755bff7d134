// End to end over real processes and TLS sockets: herald-controlplane and herald-dataplane
// (two workers) on loopback, accounts registered through the public HTTPS API (codes read from
// the log gateway's sms.log), clients logging in with their session tokens. Checks the chat
// semantics of docs/PROTOCOL.md as a client sees them, and herald-chat as a person runs it.
//
//   dataplane_e2e_test <herald-controlplane> <herald-dataplane> <herald-chat>
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "platform/auth/account_id.h"
#include "tools/client/chat_client.h"
#include "tools/client/public_api.h"

namespace herald::tools {
namespace {

std::string g_controlplane;
std::string g_dataplane;
std::string g_herald_chat;

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

bool port_open(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
};

// A node: both processes on loopback ports, in a temporary directory.
class Node {
 public:
  Node() {
    char tmpl[] = "/tmp/herald-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    data_dir_ = dir_ + "/data";
    admin_port_ = free_port();
    public_port_ = free_port();
    chat_port_ = free_port();
    std::ofstream(dir_ + "/node.json")
        << "{\"controlplane\": {\"ipc_socket_path\": \"" << dir_
        << "/ipc.sock\", \"admin_port\": " << admin_port_
        << ", \"public_address\": \"127.0.0.1\", \"public_port\": " << public_port_
        << "}, \"dataplane\": {\"listen_address\": \"127.0.0.1\", \"chat_port\": " << chat_port_
        << ", \"workers\": 2, \"poll_mode\": \"blocking\"}}";
  }
  ~Node() {
    stop(dataplane_);
    stop(controlplane_);
    std::error_code ignored;
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
  void start_dataplane() { dataplane_ = spawn(g_dataplane, "dataplane.log"); }
  void kill_dataplane() {
    ::kill(dataplane_, SIGKILL);
    waitpid(dataplane_, nullptr, 0);
    dataplane_ = -1;
  }
  // Both listening.
  void wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!(port_open(public_port_) && port_open(chat_port_))) {
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
    return {.host = "127.0.0.1", .port = chat_port_, .trust = Trust::pinned(*pem)};
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
    return user;
  }

  // A logged-in client. The session key may reach the dataplane a moment after the token was
  // issued (AuthError UnknownKey): retried, as a client does.
  std::unique_ptr<ChatClient> login(const User& user) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      auto client = ChatClient::connect({.stream = chat()});
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
  // Forks and execs `binary` with its output in `log`. The child dies with this process
  // (PR_SET_PDEATHSIG), so a test binary that is killed leaves no node behind.
  pid_t spawn(const std::string& binary, const char* log) {
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
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    EXPECT_GT(pid, 0);
    return pid;
  }
  static void stop(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
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
      g_herald_chat + " --public 127.0.0.1:" + std::to_string(node_.public_port()) +
      " --chat 127.0.0.1:" + std::to_string(node_.chat_port()) + " --data-dir " + node_.data_dir() +
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
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <herald-controlplane> <herald-dataplane> <herald-chat>\n",
                 argv[0]);
    return 2;
  }
  herald::tools::g_controlplane = argv[1];
  herald::tools::g_dataplane = argv[2];
  herald::tools::g_herald_chat = argv[3];
  signal(SIGPIPE, SIG_IGN);
  return RUN_ALL_TESTS();
}
