// SendStream: one send in flight per connection, short sends resubmitted from where they
// stopped, chunks completed in order.
#include "platform/uring/send_stream.h"

#include <errno.h>

namespace herald::uring {

SendStream::SendStream(EventLoop& loop, int fd, DoneFn done, void* context)
    : loop_(loop), fd_(fd), done_(done), context_(context), op_(&SendStream::on_send, this) {}

int32_t SendStream::push(SendChunk& chunk) {
  if (error_ != 0) return error_;
  // A zero-byte send would complete as "0 bytes sent", indistinguishable from a dead peer.
  if (chunk.size_bytes == 0) return -EINVAL;
  chunk.next = nullptr;
  chunk.sent_bytes = 0;
  if (tail_ != nullptr) {
    tail_->next = &chunk;
  } else {
    head_ = &chunk;
  }
  tail_ = &chunk;
  if (!op_.in_flight()) send_head();
  return 0;
}

void SendStream::cancel() {
  (void)loop_.cancel(op_);
}

void SendStream::send_head() {
  SendChunk* chunk = head_;
  loop_.send(op_, fd_, chunk->data + chunk->sent_bytes, chunk->size_bytes - chunk->sent_bytes);
}

void SendStream::on_send(Operation& op, const Completion& completion) {
  auto* stream = op.context_as<SendStream>();
  SendChunk* chunk = stream->head_;
  if (completion.result <= 0) {
    // 0 bytes for a non-empty send: the socket will take nothing more; call it a broken pipe
    // rather than resubmitting forever.
    stream->error_ = completion.result < 0 ? completion.result : -EPIPE;
    stream->fail_queued(stream->error_);
    return;
  }
  chunk->sent_bytes += static_cast<uint32_t>(completion.result);
  if (chunk->sent_bytes < chunk->size_bytes) {
    ++stream->partial_sends_;
    stream->send_head();
    return;
  }
  stream->head_ = chunk->next;
  if (stream->head_ == nullptr) stream->tail_ = nullptr;
  chunk->next = nullptr;
  // Start the next chunk before the callback, so the connection never idles while the owner
  // handles one; the callback is the last use of `stream`.
  if (stream->head_ != nullptr) stream->send_head();
  stream->done_(*stream, *chunk, static_cast<int32_t>(chunk->size_bytes));
}

void SendStream::fail_queued(int32_t error) {
  SendChunk* chunk = head_;
  head_ = nullptr;
  tail_ = nullptr;
  const DoneFn done = done_;
  while (chunk != nullptr) {
    SendChunk* next = chunk->next;
    chunk->next = nullptr;
    done(*this, *chunk, error);
    chunk = next;
  }
}

}  // namespace herald::uring
