// CRC32C throughput: the SSE4.2 path (what storage records and IPC use) against the portable
// slicing-by-8 fallback, over record-sized and segment-sized buffers.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "platform/crc32c/crc32c.h"

namespace {

std::vector<uint8_t> make_buffer(size_t size_bytes) {
  std::vector<uint8_t> buf(size_bytes);
  uint32_t x = 0x9e3779b9;
  for (auto& b : buf) {
    x = x * 1664525 + 1013904223;
    b = static_cast<uint8_t>(x >> 24);
  }
  return buf;
}

void BM_Crc32cHardware(benchmark::State& state) {
  if (!herald::crc32c::hardware_accelerated()) {
    state.SkipWithError("no SSE4.2 on this CPU");
    return;
  }
  const auto buf = make_buffer(static_cast<size_t>(state.range(0)));
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = herald::crc32c::extend(crc, buf.data(), buf.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

void BM_Crc32cPortable(benchmark::State& state) {
  const auto buf = make_buffer(static_cast<size_t>(state.range(0)));
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = herald::crc32c::extend_portable(crc, buf.data(), buf.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

BENCHMARK(BM_Crc32cHardware)->Arg(64)->Arg(512)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_Crc32cPortable)->Arg(64)->Arg(512)->Arg(4096)->Arg(65536)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
