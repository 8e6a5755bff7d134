// Throughput of the shared-memory SPSC ring between two processes (producer in the benchmark
// process, consumer in a fork()ed child), batched and one record at a time, and the round-trip
// latency of a ping-pong over two rings between two threads.
//
//   build-rel/tests/bench/ring/ring_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <emmintrin.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "platform/assert/assert.h"
#include "platform/log/log.h"
#include "platform/shm/doorbell.h"
#include "platform/shm/ring.h"
#include "platform/shm/segment.h"

namespace herald::shm {
namespace {

constexpr uint64_t kCapacityBytes = 256 * 1024;
constexpr uint32_t kStopType = 0xdead;
constexpr int kSpinsBeforeSleep = 2000;

struct SharedRing {
  Segment segment;
  Doorbell bell;
};

SharedRing make_ring(uint64_t capacity) {
  auto seg = Segment::create("ring_bench", ring_region_bytes(capacity));
  HERALD_CHECK(seg.ok(), "segment");
  HERALD_CHECK(ring_init(seg->bytes(), {capacity, 0}).ok(), "ring_init");
  auto bell = Doorbell::create();
  HERALD_CHECK(bell.ok(), "doorbell");
  return {std::move(*seg), std::move(*bell)};
}

// The child: drains records `batch` at a time, checks each one's sequence number, spins a while
// when idle and then sleeps on the doorbell. Exit code 0 = every record in order.
[[noreturn]] void consumer_child(SharedRing& shared, size_t batch) {
  auto ring = RingConsumer::attach(shared.segment.bytes());
  if (!ring.ok()) ::_exit(2);
  std::vector<RecordView> views(batch);
  uint64_t expected = 0;
  uint64_t checksum = 0;
  int idle = 0;
  for (;;) {
    const ReadResult r = ring->read_batch(views);
    if (r.status == RingStatus::kCorrupt) ::_exit(3);
    for (size_t i = 0; i < r.count; ++i) {
      if (views[i].type == kStopType) ::_exit(checksum == 1 ? 6 : 0);  // keep the sum alive
      uint64_t seq;
      std::memcpy(&seq, views[i].payload.data(), sizeof(seq));
      if (seq != expected++) ::_exit(4);
      // Read every byte, as a real consumer (a FlatBuffers verifier) would, so the figure
      // includes moving the payload between the cores' caches.
      uint64_t word;
      for (size_t off = 0; off + sizeof(word) <= views[i].payload.size(); off += sizeof(word)) {
        std::memcpy(&word, views[i].payload.data() + off, sizeof(word));
        checksum += word;
      }
    }
    ring->release();
    if (r.count > 0) {
      idle = 0;
    } else if (++idle < kSpinsBeforeSleep) {
      _mm_pause();
    } else {
      idle = 0;
      (void)ring->wait(shared.bell.fd(), 1000);
      if (::getppid() == 1) ::_exit(5);  // the benchmark process is gone
    }
  }
}

// args: payload bytes, records per batch (1 = try_enqueue / read one at a time).
void BM_CrossProcess(benchmark::State& state) {
  const auto payload_bytes = static_cast<size_t>(state.range(0));
  const auto batch = static_cast<size_t>(state.range(1));
  SharedRing shared = make_ring(kCapacityBytes);
  const pid_t pid = ::fork();
  if (pid == 0) consumer_child(shared, batch);
  auto producer = RingProducer::attach(shared.segment.bytes());
  HERALD_CHECK(producer.ok(), "producer");
  producer->set_doorbell(shared.bell.fd());

  std::vector<std::vector<std::byte>> payloads(batch, std::vector<std::byte>(payload_bytes));
  std::vector<OutRecord> out(batch);
  uint64_t seq = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      std::memcpy(payloads[i].data(), &seq, sizeof(seq));
      ++seq;
      out[i] = {1, payloads[i]};
    }
    size_t done = 0;
    while (done < batch) {
      if (batch == 1) {
        done += producer->try_enqueue(out[0].type, out[0].payload) == RingStatus::kOk;
      } else {
        done += producer->enqueue_batch(std::span(out).subspan(done));
      }
      if (done < batch) _mm_pause();
    }
  }
  while (producer->try_enqueue(kStopType, {}) != RingStatus::kOk) _mm_pause();
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("consumer failed");
  const auto& st = producer->stats();
  state.SetItemsProcessed(static_cast<int64_t>(seq));
  state.SetBytesProcessed(static_cast<int64_t>(seq * payload_bytes));
  state.counters["full_per_record"] =
      benchmark::Counter(static_cast<double>(st.full) / static_cast<double>(seq ? seq : 1));
  state.counters["rings_per_record"] = benchmark::Counter(static_cast<double>(st.doorbell_rings) /
                                                          static_cast<double>(seq ? seq : 1));
}
BENCHMARK(BM_CrossProcess)
    ->ArgNames({"payload_bytes", "batch"})
    ->Args({64, 1})
    ->Args({64, 32})
    ->Args({512, 1})
    ->Args({512, 32})
    ->UseRealTime();

// Round trip of one 64-byte record: main thread -> ring A -> echo thread -> ring B -> main.
// Both sides busy-poll (no doorbell), as dataplane workers do.
void BM_PingPongThreads(benchmark::State& state) {
  SharedRing a = make_ring(4096);
  SharedRing b = make_ring(4096);
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    auto in = RingConsumer::attach(a.segment.bytes());
    auto out = RingProducer::attach(b.segment.bytes());
    HERALD_CHECK(in.ok() && out.ok(), "attach");
    RecordView v[1];
    while (!stop.load(std::memory_order_relaxed)) {
      if (in->read_batch(v).count == 0) {
        _mm_pause();
        continue;
      }
      while (out->try_enqueue(v[0].type, v[0].payload) != RingStatus::kOk) _mm_pause();
      in->release();
    }
  });
  auto out = RingProducer::attach(a.segment.bytes());
  auto in = RingConsumer::attach(b.segment.bytes());
  HERALD_CHECK(in.ok() && out.ok(), "attach");
  std::byte payload[64] = {};
  RecordView v[1];
  for (auto _ : state) {
    while (out->try_enqueue(1, payload) != RingStatus::kOk) _mm_pause();
    while (in->read_batch(v).count == 0) _mm_pause();
    in->release();
  }
  stop = true;
  echo.join();
}
BENCHMARK(BM_PingPongThreads)->UseRealTime();

}  // namespace
}  // namespace herald::shm

int main(int argc, char** argv) {
  herald::log::set_min_level(herald::log::Level::kWarn);  // no per-segment info lines
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
