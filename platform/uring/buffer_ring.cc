// Provided-buffer ring: registration, the mapping that holds the buffers, and recycling.
#include "platform/uring/buffer_ring.h"

#include <errno.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"

namespace herald::uring {
namespace {

// The kernel caps a buffer ring at 2^15 entries (IORING_REGISTER_PBUF_RING).
constexpr uint32_t kMaxBuffers = 32768;

size_t round_to_pages(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

void* map_anonymous(size_t bytes) {
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return mem == MAP_FAILED ? nullptr : mem;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::create(EventLoop& loop, uint32_t count,
                                                               uint32_t buffer_size_bytes) {
  if (!loop.features().buf_ring) {
    return absl::UnimplementedError(
        "provided buffer rings need Linux 5.19 or later (io_uring_register_buf_ring)");
  }
  if (count == 0 || count > kMaxBuffers || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer ring count must be a power of two up to ", kMaxBuffers));
  }
  if (buffer_size_bytes == 0) {
    return absl::InvalidArgumentError("buffer ring buffers must not be empty");
  }
  const uint16_t group_id = loop.allocate_group_id();
  if (group_id == UINT16_MAX) {
    return absl::ResourceExhaustedError("no provided-buffer group id left on this loop");
  }
  // The ring entries must be page aligned for the kernel to pin them; mmap gives that.
  const size_t ring_bytes = round_to_pages(count * sizeof(io_uring_buf));
  const size_t buffers_bytes = round_to_pages(static_cast<size_t>(count) * buffer_size_bytes);
  void* ring_mem = map_anonymous(ring_bytes);
  void* buffers_mem = ring_mem != nullptr ? map_anonymous(buffers_bytes) : nullptr;
  if (buffers_mem == nullptr) {
    if (ring_mem != nullptr) ::munmap(ring_mem, ring_bytes);
    loop.group_ids_.reset(group_id);
    return absl::ResourceExhaustedError(
        absl::StrCat("mmap of ", buffers_bytes, " bytes for a buffer ring failed"));
  }
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(ring_mem);
  reg.ring_entries = count;
  reg.bgid = group_id;
  const int rc = io_uring_register_buf_ring(loop.ring_.get(), &reg, 0);
  if (rc != 0) {
    ::munmap(buffers_mem, buffers_bytes);
    ::munmap(ring_mem, ring_bytes);
    loop.group_ids_.reset(group_id);
    return absl::InternalError(absl::StrCat("io_uring_register_buf_ring: ", std::strerror(-rc)));
  }
  auto* br = static_cast<io_uring_buf_ring*>(ring_mem);
  io_uring_buf_ring_init(br);
  std::unique_ptr<BufferRing> ring(new BufferRing(loop, group_id, count, buffer_size_bytes, br,
                                                  ring_bytes, static_cast<uint8_t*>(buffers_mem),
                                                  buffers_bytes));
  for (uint32_t id = 0; id < count; ++id) {
    io_uring_buf_ring_add(br, ring->buffer(static_cast<uint16_t>(id)), buffer_size_bytes,
                          static_cast<unsigned short>(id), io_uring_buf_ring_mask(count),
                          static_cast<int>(id));
  }
  io_uring_buf_ring_advance(br, static_cast<int>(count));
  loop.register_ring(ring.get());
  return ring;
}

BufferRing::BufferRing(EventLoop& loop, uint16_t group_id, uint32_t count,
                       uint32_t buffer_size_bytes, io_uring_buf_ring* ring, size_t ring_bytes,
                       uint8_t* buffers, size_t buffers_bytes)
    : loop_(loop),
      group_id_(group_id),
      count_(count),
      buffer_size_bytes_(buffer_size_bytes),
      ring_(ring),
      ring_bytes_(ring_bytes),
      buffers_(buffers),
      buffers_bytes_(buffers_bytes),
      held_(new uint64_t[(count + 63) / 64]()) {}

BufferRing::~BufferRing() {
  // Receives parked here would wait forever on a ring that is gone: end them.
  while (Operation* op = starved_.pop_front()) loop_.finish_locally(*op, -ECANCELED);
  (void)io_uring_unregister_buf_ring(loop_.ring_.get(), group_id_);
  loop_.unregister_ring(this);
  ::munmap(buffers_, buffers_bytes_);
  ::munmap(ring_, ring_bytes_);
}

void BufferRing::take(uint16_t id) {
  HERALD_CHECK(id < count_, "kernel picked a buffer id out of range");
  uint64_t& word = held_[id / 64];
  const uint64_t bit = uint64_t{1} << (id % 64);
  HERALD_CHECK((word & bit) == 0, "kernel picked a buffer a consumer still holds");
  word |= bit;
  ++outstanding_;
}

void BufferRing::recycle(uint16_t id) {
  HERALD_CHECK(id < count_, "recycled buffer id out of range");
  uint64_t& word = held_[id / 64];
  const uint64_t bit = uint64_t{1} << (id % 64);
  if (HERALD_BUG_IF((word & bit) == 0, "buffer recycled twice or never delivered")) return;
  word &= ~bit;
  --outstanding_;
  publish(id);
  recycled_since_rearm_ = true;
}

void BufferRing::publish(uint16_t id) {
  // Only this thread adds buffers, and the kernel reads the tail with acquire semantics, so a
  // store-release of the new tail (in advance) is all the ordering needed.
  io_uring_buf_ring_add(ring_, buffer(id), buffer_size_bytes_, id, io_uring_buf_ring_mask(count_),
                        0);
  io_uring_buf_ring_advance(ring_, 1);
}

}  // namespace herald::uring
