// UniqueFd: sole owner of a file descriptor (closed on destruction). Used for shared-memory
// segments, eventfd doorbells and descriptors received over SCM_RIGHTS.
#pragma once

#include <unistd.h>

#include <utility>

namespace herald::shm {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

  // Closes the owned descriptor (if any) and takes `fd`. close(2) errors are ignored on
  // purpose: on Linux the descriptor is released even when close reports EINTR/EIO, so a
  // retry could close an unrelated, newly allocated descriptor.
  void reset(int fd = -1) {
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace herald::shm
