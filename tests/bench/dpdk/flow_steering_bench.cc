// What software flow steering costs per received frame (flow_steering.h): the owner of a TCP
// frame by the table-driven symmetric Toeplitz hash, against the bit-by-bit reference, and the
// owner of an ARP frame (no hash). Prints figures (docs/PERFORMANCE.md); not a test.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "dataplane/transport/dpdk/flow_steering.h"

namespace herald::dataplane::dpdk {
namespace {

// 1,024 TCP frames of distinct flows (Ethernet + IPv4 + TCP ports), as a port delivers them.
std::vector<std::vector<uint8_t>> tcp_frames() {
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < 1024; ++i) {
    std::vector<uint8_t> f(14 + 20 + 20, 0);
    f[12] = 0x08;
    f[14] = 0x45;
    f[14 + 9] = 6;
    const uint32_t src = 0x0a010000 + i, dst = 0x0a000001;
    for (int b = 0; b < 4; ++b) {
      f[14 + 12 + b] = static_cast<uint8_t>(src >> (24 - 8 * b));
      f[14 + 16 + b] = static_cast<uint8_t>(dst >> (24 - 8 * b));
    }
    const uint16_t sport = static_cast<uint16_t>(32768 + i * 7), dport = 5222;
    f[34] = static_cast<uint8_t>(sport >> 8);
    f[35] = static_cast<uint8_t>(sport);
    f[36] = static_cast<uint8_t>(dport >> 8);
    f[37] = static_cast<uint8_t>(dport);
    frames.push_back(std::move(f));
  }
  return frames;
}

void BM_OwnerOfTcpFrame(benchmark::State& state) {
  const FlowSteering steering(static_cast<uint16_t>(state.range(0)));
  const auto frames = tcp_frames();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(steering.owner(frames[i++ & 1023]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OwnerOfTcpFrame)->Arg(2)->Arg(8);

void BM_ReferenceToeplitzOfTuple(benchmark::State& state) {
  const auto frames = tcp_frames();
  size_t i = 0;
  for (auto _ : state) {
    const auto& f = frames[i++ & 1023];
    benchmark::DoNotOptimize(toeplitz_hash(kSymmetricRssKey, std::span(f).subspan(26, 12)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReferenceToeplitzOfTuple);

void BM_OwnerOfArpFrame(benchmark::State& state) {
  const FlowSteering steering(2);
  std::vector<uint8_t> arp(60, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  for (auto _ : state) benchmark::DoNotOptimize(steering.owner(arp));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OwnerOfArpFrame);

}  // namespace
}  // namespace herald::dataplane::dpdk

BENCHMARK_MAIN();
