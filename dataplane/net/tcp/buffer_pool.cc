// The TCP engine's per-lcore buffer pool (see buffer_pool.h).
#include "dataplane/net/tcp/buffer_pool.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace herald::net::tcp {

uint32_t BufferPool::class_bytes(uint32_t need_bytes, uint32_t max_bytes) {
  uint64_t bytes = kMinClassBytes;
  while (bytes < need_bytes) bytes *= 4;
  return static_cast<uint32_t>(bytes < max_bytes ? bytes : max_bytes);
}

BufferPool::BufferPool(uint64_t limit_bytes, uint64_t cache_bytes)
    : limit_bytes_(limit_bytes), cache_limit_bytes_(cache_bytes) {}

BufferPool::~BufferPool() {
  for (FreeList& l : lists_) {
    while (l.head != nullptr) {
      uint8_t* next;
      std::memcpy(&next, l.head, sizeof(next));
      std::free(l.head);
      l.head = next;
    }
  }
}

BufferPool::FreeList* BufferPool::list_for(uint32_t bytes, bool create) {
  for (FreeList& l : lists_) {
    if (l.bytes == bytes) return &l;
  }
  if (!create) return nullptr;
  lists_.push_back(FreeList{bytes, nullptr});
  return &lists_.back();
}

uint8_t* BufferPool::alloc(uint32_t bytes) {
  if (!can_alloc(bytes)) {
    ++refused_;
    return nullptr;
  }
  uint8_t* buffer = nullptr;
  FreeList* l = list_for(bytes, false);
  if (l != nullptr && l->head != nullptr) {
    buffer = l->head;
    std::memcpy(&l->head, buffer, sizeof(l->head));
    cached_bytes_ -= bytes;
  } else {
    // A buffer smaller than a pointer could not be cached: the engine never asks for one
    // (its rings are at least one MSS), but keep the free list sound regardless.
    buffer = static_cast<uint8_t*>(std::malloc(bytes < sizeof(void*) ? sizeof(void*) : bytes));
    if (buffer == nullptr) throw std::bad_alloc();
  }
  in_use_bytes_ += bytes;
  if (in_use_bytes_ > high_water_bytes_) high_water_bytes_ = in_use_bytes_;
  return buffer;
}

void BufferPool::release(uint8_t* buffer, uint32_t bytes) {
  if (buffer == nullptr) return;
  in_use_bytes_ -= bytes;
  if (cached_bytes_ + bytes <= cache_limit_bytes_) {
    FreeList* l = list_for(bytes, true);
    std::memcpy(buffer, &l->head, sizeof(l->head));
    l->head = buffer;
    cached_bytes_ += bytes;
    return;
  }
  std::free(buffer);
}

}  // namespace herald::net::tcp
