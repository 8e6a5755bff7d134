// Frame buffers for the sessions' decoders, lent only while a session holds a partial frame: an
// idle session holds none, so memory follows the sessions mid-frame, not the sessions open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace herald::dataplane {

class DecodeBufferPool {
 public:
  using Buffer = std::unique_ptr<uint64_t[]>;  // 8-aligned, as the FrameDecoder needs

  DecodeBufferPool(size_t buffer_bytes, uint32_t max_lent, uint32_t max_cached)
      : buffer_bytes_(buffer_bytes), max_lent_(max_lent), max_cached_(max_cached) {
    cached_.reserve(max_cached);
  }

  // A buffer of buffer_bytes(), or null when max_lent are out.
  [[nodiscard]] Buffer acquire() {
    if (lent_ >= max_lent_) return nullptr;
    Buffer b;
    if (!cached_.empty()) {
      b = std::move(cached_.back());
      cached_.pop_back();
    } else {
      b = std::make_unique_for_overwrite<uint64_t[]>(words());
    }
    ++lent_;
    return b;
  }

  void release(Buffer buffer, size_t bytes) {
    if (buffer == nullptr) return;
    --lent_;
    // A buffer of an older size (the limits changed) is not kept.
    if (bytes == buffer_bytes_ && cached_.size() < max_cached_)
      cached_.push_back(std::move(buffer));
  }

  // New limits: later acquisitions get buffers of the new size.
  void resize(size_t buffer_bytes) {
    if (buffer_bytes == buffer_bytes_) return;
    buffer_bytes_ = buffer_bytes;
    cached_.clear();
  }

  size_t buffer_bytes() const { return buffer_bytes_; }
  uint32_t lent() const { return lent_; }

 private:
  size_t words() const { return (buffer_bytes_ + 7) / 8; }

  size_t buffer_bytes_;
  uint32_t max_lent_;
  uint32_t max_cached_;
  uint32_t lent_ = 0;
  std::vector<Buffer> cached_;
};

}  // namespace herald::dataplane
