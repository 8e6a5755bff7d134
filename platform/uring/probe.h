// Internal to platform/uring: creating a ring with the best setup flags the kernel accepts, and
// probing what it supports by submitting real requests. Not part of the public API.
#pragma once

#include "absl/status/status.h"
#include "platform/uring/event_loop.h"
#include "platform/uring/features.h"

struct io_uring;

namespace herald::uring::detail {

// Initialises `ring`, trying flag sets from the most helpful down to none and dropping each
// the kernel answers EINVAL to. Records the flags, sizes and IORING_FEAT_* bits in `features`.
absl::Status create_ring(const Options& options, io_uring* ring, Features* features);

// Fills the opcode bitmap and the probed behaviours in `features`, and fails naming whatever
// the loop cannot run without. Leaves nothing in flight on `ring`.
absl::Status probe_features(const Options& options, io_uring* ring, Features* features);

}  // namespace herald::uring::detail
