// libFuzzer target for the profiler's capture reader (controlplane/profiler/capture.h). The
// input is a whole .hprof file in an exactly-sized heap buffer (a read past it is an ASan
// report). Checks: decode never crashes; a capture it accepts re-encodes to the same bytes
// (one capture, one encoding), and every sample has one value slot per series.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "controlplane/profiler/capture.h"
#include "platform/crc32c/crc32c.h"

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

// The checksum rejects almost every mutation, so each input is also decoded as a body under a
// fixed-up header (length) and trailer (CRC32C): that is how the fuzzer reaches the body parser.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using herald::profiler::Capture;
  using herald::profiler::decode_capture;
  using herald::profiler::encode_capture;
  auto check = [](std::string_view bytes) {
    absl::StatusOr<Capture> c = decode_capture(bytes);
    if (!c.ok()) return;
    for (const auto& s : c->samples) FUZZ_CHECK(s.values.size() == c->series.size());
    FUZZ_CHECK(encode_capture(*c) == bytes);
  };
  std::unique_ptr<char[]> copy(new char[size]);
  if (size != 0) std::memcpy(copy.get(), data, size);
  check(std::string_view(copy.get(), size));

  // The body as given, under a valid header and trailer.
  std::string fixed = encode_capture(Capture{}).substr(0, 20);
  fixed.append(reinterpret_cast<const char*>(data), size);
  const uint64_t total = fixed.size() + 4;
  for (int i = 0; i < 8; ++i) fixed[12 + i] = static_cast<char>((total >> (8 * i)) & 0xff);
  const uint32_t crc = herald::crc32c::value(fixed.data(), fixed.size());
  for (int i = 0; i < 4; ++i) fixed.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  check(fixed);
  return 0;
}
