// Ordered, complete sends on one connection. A stream socket may take only part of a send; a
// second send in flight on the same socket could then slip its bytes in before the rest of the
// first. SendStream keeps one send in flight per connection and resubmits the remainder, so
// queued chunks arrive whole and in order.
#pragma once

#include <cstdint>

#include "platform/uring/event_loop.h"

namespace herald::uring {

// Caller-owned and intrusive: no allocation per chunk. The bytes and the chunk must stay valid
// until the chunk's done callback.
struct SendChunk {
  const uint8_t* data = nullptr;
  uint32_t size_bytes = 0;
  uint32_t sent_bytes = 0;  // progress, maintained by SendStream
  SendChunk* next = nullptr;
  void* user = nullptr;  // for the owner's bookkeeping (which buffer to recycle, ...)
};

class SendStream {
 public:
  // `result` is chunk.size_bytes once all of it was sent, or -errno. After an error the stream
  // has failed: queued chunks complete with the same error and later pushes are refused.
  using DoneFn = void (*)(SendStream& stream, SendChunk& chunk, int32_t result);

  SendStream(EventLoop& loop, int fd, DoneFn done, void* context);
  ~SendStream() = default;
  SendStream(const SendStream&) = delete;
  SendStream& operator=(const SendStream&) = delete;

  // Queues `chunk` behind those already queued. Returns 0, or the stream's error (-errno) when
  // it has failed; then the chunk was not taken and no callback will come for it.
  [[nodiscard]] int32_t push(SendChunk& chunk);
  // Cancels the send in flight; it and every queued chunk complete with -ECANCELED.
  void cancel();

  bool idle() const { return head_ == nullptr && !op_.in_flight(); }
  void* context() const { return context_; }
  int fd() const { return fd_; }
  int32_t error() const { return error_; }
  // Sends that moved fewer bytes than asked, each followed by a send of the remainder.
  uint64_t partial_sends() const { return partial_sends_; }

 private:
  static void on_send(Operation& op, const Completion& completion);
  void send_head();
  void fail_queued(int32_t error);

  EventLoop& loop_;
  const int fd_;
  DoneFn done_;
  void* context_;
  Operation op_;
  SendChunk* head_ = nullptr;
  SendChunk* tail_ = nullptr;
  int32_t error_ = 0;
  uint64_t partial_sends_ = 0;
};

}  // namespace herald::uring
