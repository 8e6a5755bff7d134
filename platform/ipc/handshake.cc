// IPC handshake helpers: refusal messages and the control plane's listening socket.
// References: unix(7) (SOCK_SEQPACKET, pathname sockets, permissions), connect(2) ECONNREFUSED.
#include "platform/ipc/handshake.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "platform/log/log.h"

namespace herald::ipc {
namespace {

absl::Status errno_status(const std::string& what, int err) {
  // ErrnoToStatus appends strerror(err) itself.
  return absl::ErrnoToStatus(err, what);
}

}  // namespace

const char* reject_code_name(RejectCode code) {
  switch (code) {
    case RejectCode::kBadHello: return "bad_hello";
    case RejectCode::kVersionMismatch: return "version_mismatch";
    case RejectCode::kWorkerMismatch: return "worker_mismatch";
    case RejectCode::kBusy: return "busy";
    case RejectCode::kInternal: return "internal";
    case RejectCode::kTimeout: return "timeout";
  }
  return "unknown";
}

std::string encode_reject(RejectCode code, std::string_view reason) {
  const RejectHeader header{kRejectMagic, static_cast<uint32_t>(code)};
  std::string out(reinterpret_cast<const char*>(&header), sizeof(header));
  out.append(reason.substr(0, kMaxHandshakeBytes - sizeof(header)));
  return out;
}

absl::StatusOr<shm::UniqueFd> listen_ipc_socket(const std::string& path, int backlog) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path[0] != '/' || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("ipc: socket path '", path,
                                                   "' must be absolute and shorter than ",
                                                   sizeof(addr.sun_path), " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);

  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("ipc: cannot create ", parent.string(), ": ", ec.message()));
    }
    ::chmod(parent.c_str(), 0750);
  }

  // A file already at the path: ours from a control plane that died (nobody accepts on it:
  // ECONNREFUSED), a live control plane (refuse to steal its socket), or something else
  // entirely (never delete what is not a socket).
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("ipc: ", path, " exists and is not a socket; refusing to replace it"));
    }
    shm::UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!probe) return errno_status("ipc: socket", errno);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ipc: ", path, " is in use by a running control plane; refusing to replace it"));
    }
    const int err = errno;
    if (err != ECONNREFUSED && err != ENOENT) {
      return errno_status(absl::StrCat("ipc: probing existing socket ", path), err);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_status(absl::StrCat("ipc: removing stale socket ", path), errno);
    }
    HLOG_INFO("ipc.stale_socket_removed").kv("path", path);
  }

  shm::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_status("ipc: socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0) {
    return errno_status(absl::StrCat("ipc: bind ", path), errno);
  }
  // Before listen(): until then nobody can connect, so the window between bind (mode from the
  // umask) and chmod admits no one. Connecting needs write permission on the socket file.
  if (::chmod(path.c_str(), 0600) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return errno_status(absl::StrCat("ipc: chmod 0600 ", path), err);
  }
  if (::listen(fd.get(), backlog) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return errno_status(absl::StrCat("ipc: listen ", path), err);
  }
  return fd;
}

}  // namespace herald::ipc
