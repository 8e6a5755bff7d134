// Doorbell: eventfd(2) creation, adoption and the ring/drain system calls.
#include "platform/shm/doorbell.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace herald::shm {

absl::StatusOr<Doorbell> Doorbell::create() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: eventfd failed: ", std::strerror(err)));
  }
  return Doorbell(std::move(fd));
}

absl::StatusOr<Doorbell> Doorbell::adopt(UniqueFd fd) {
  if (!fd) return absl::InvalidArgumentError("shm: doorbell: no descriptor");
  // An eventfd is an anonymous inode; /proc names it "anon_inode:[eventfd]".
  const std::string link = absl::StrCat("/proc/self/fd/", fd.get());
  char target[64] = {};
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  if (n > 0 && std::string_view(target, static_cast<size_t>(n)) != "anon_inode:[eventfd]") {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: doorbell descriptor is not an eventfd but ", target));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("shm: doorbell fcntl: ", std::strerror(err)));
  }
  return Doorbell(std::move(fd));
}

bool Doorbell::ring_eventfd(int fd) {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  return n == sizeof(one) || (n < 0 && errno == EAGAIN);
}

uint64_t Doorbell::drain_eventfd(int fd) {
  uint64_t count = 0;
  ssize_t n;
  do {
    n = ::read(fd, &count, sizeof(count));
  } while (n < 0 && errno == EINTR);
  return n == sizeof(count) ? count : 0;
}

}  // namespace herald::shm
