// Frame decoding cost: feed + length check + FlatBuffers verification of Message frames, as a
// session does for each TLS record's plaintext (fed in 16 KiB pieces, the TLS record size).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"
#include "schemas/wire_generated.h"

namespace {

using herald::codec::DecoderLimits;
using herald::codec::DecodeStatus;
using herald::codec::FrameBuilder;
using herald::codec::OwnedFrameDecoder;
namespace wire = herald::wire;

constexpr size_t kTlsRecordBytes = 16384;

std::vector<uint8_t> message_frame(uint64_t client_msg_id, size_t body_bytes) {
  FrameBuilder b;
  auto& fbb = b.fbb();
  std::vector<uint8_t> body(body_bytes, 0x5a);
  const wire::GroupId group(0x1111, 0x2222);
  auto to = wire::CreateToGroup(fbb, &group);
  auto body_off = fbb.CreateVector(body);
  auto msg = wire::CreateMessage(fbb, wire::Recipient::ToGroup, to.Union(), client_msg_id, body_off,
                                 /*content_type=*/1, /*client_time_ms=*/1);
  auto bytes = b.finish(msg);
  return {bytes.begin(), bytes.end()};
}

// A stream of 1 MiB of back-to-back Message frames with `body_bytes` bodies.
void BM_DecodeMessages(benchmark::State& state) {
  const size_t body_bytes = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> frame = message_frame(42, body_bytes);
  std::vector<uint8_t> stream;
  while (stream.size() < (1u << 20)) stream.insert(stream.end(), frame.begin(), frame.end());
  const size_t frames_per_stream = stream.size() / frame.size();

  DecoderLimits limits;
  limits.max_frame_bytes = 65536;
  OwnedFrameDecoder decoder(limits);
  uint64_t frames = 0;
  for (auto _ : state) {
    std::span<const uint8_t> in(stream);
    while (!in.empty()) {
      std::span<const uint8_t> piece = in.first(std::min(in.size(), kTlsRecordBytes));
      while (!piece.empty()) {
        const size_t taken = decoder.feed(piece);
        piece = piece.subspan(taken);
        in = in.subspan(taken);
        for (auto r = decoder.next_frame(); r.status == DecodeStatus::kFrame;
             r = decoder.next_frame()) {
          benchmark::DoNotOptimize(r.frame.frame);
          ++frames;
        }
      }
    }
  }
  if (frames != frames_per_stream * state.iterations()) state.SkipWithError("frames lost");
  state.SetItemsProcessed(static_cast<int64_t>(frames));
  state.SetBytesProcessed(static_cast<int64_t>(frames * frame.size()));
  state.counters["frame_bytes"] = static_cast<double>(frame.size());
}

BENCHMARK(BM_DecodeMessages)->Arg(100)->Arg(1000)->Arg(16000);

}  // namespace

BENCHMARK_MAIN();
