// The control plane's IPC socket: mode 0600, a stale socket file from a dead control plane is
// replaced, a live one or a non-socket is never touched; refusal messages and the client's
// errors when nobody listens.
#include "platform/ipc/handshake.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "platform/ipc/client.h"

namespace herald::ipc {
namespace {

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herald-ipc-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/run/ipc.sock";  // the parent does not exist yet
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  std::string path_;
};

// A socket file as a crashed process leaves it: bound, then closed without unlink.
void leave_stale_socket(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
}

TEST_F(HandshakeTest, CreatesParentAndSocketWithMode0600) {
  auto fd = listen_ipc_socket(path_);
  ASSERT_TRUE(fd.ok()) << fd.status();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(HandshakeTest, ReplacesAStaleSocketFile) {
  leave_stale_socket(path_);
  ASSERT_TRUE(std::filesystem::exists(path_));
  // Nothing listens: a dataplane sees "no control plane".
  auto client = connect_to_controlplane({.socket_path = path_, .workers = 1, .timeout_ms = 500});
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();

  auto fd = listen_ipc_socket(path_);
  ASSERT_TRUE(fd.ok()) << fd.status();
  // And the new socket accepts connections.
  const int c = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(c);
}

TEST_F(HandshakeTest, RefusesToStealALiveSocket) {
  auto first = listen_ipc_socket(path_);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = listen_ipc_socket(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(HandshakeTest, NeverDeletesSomethingThatIsNotASocket) {
  std::filesystem::create_directories(dir_ + "/run");
  std::ofstream(path_) << "precious";
  auto fd = listen_ipc_socket(path_);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.status().message().find("not a socket"), std::string::npos) << fd.status();
  std::ifstream in(path_);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(HandshakeTest, RejectsRelativeAndOverlongPaths) {
  EXPECT_FALSE(listen_ipc_socket("relative.sock").ok());
  EXPECT_FALSE(listen_ipc_socket("/" + std::string(200, 'x')).ok());
}

TEST_F(HandshakeTest, RejectMessageCarriesCodeAndReason) {
  const std::string m = encode_reject(RejectCode::kWorkerMismatch, "runs 2, config says 4");
  RejectHeader h{};
  ASSERT_GE(m.size(), sizeof(h));
  std::memcpy(&h, m.data(), sizeof(h));
  EXPECT_EQ(h.magic, kRejectMagic);
  EXPECT_EQ(static_cast<RejectCode>(h.code), RejectCode::kWorkerMismatch);
  EXPECT_EQ(m.substr(sizeof(h)), "runs 2, config says 4");
  EXPECT_LE(encode_reject(RejectCode::kBusy, std::string(10000, 'x')).size(), kMaxHandshakeBytes);
  EXPECT_STREQ(reject_code_name(RejectCode::kVersionMismatch), "version_mismatch");
}

}  // namespace
}  // namespace herald::ipc
