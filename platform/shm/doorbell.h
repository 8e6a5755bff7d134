// Doorbell: an eventfd that a ring's producer writes to wake a consumer that went to sleep.
// The sleep/wake protocol (who rings when) lives in ring.h; this is only the descriptor.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "platform/shm/unique_fd.h"

namespace herald::shm {

class Doorbell {
 public:
  // A new eventfd (counter mode, EFD_CLOEXEC | EFD_NONBLOCK): ringing never blocks.
  static absl::StatusOr<Doorbell> create();
  // Adopts a doorbell received from the peer (recv_fds). Checks that it is an eventfd and sets
  // O_NONBLOCK on it, so a consumer that died with a saturated counter cannot block us.
  static absl::StatusOr<Doorbell> adopt(UniqueFd fd);

  Doorbell(Doorbell&&) noexcept = default;
  Doorbell& operator=(Doorbell&&) noexcept = default;

  int fd() const { return fd_.get(); }

  // One write(2) of 1. Returns false only on an unexpected error; EAGAIN (the counter is
  // saturated, i.e. already rung many times and nobody reads) counts as rung.
  [[nodiscard]] bool ring() const { return ring_eventfd(fd_.get()); }
  // One read(2): clears the pending count and returns it (0 when nothing was pending).
  uint64_t drain() const { return drain_eventfd(fd_.get()); }

  [[nodiscard]] static bool ring_eventfd(int fd);
  static uint64_t drain_eventfd(int fd);

 private:
  explicit Doorbell(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace herald::shm
