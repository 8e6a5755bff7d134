// libFuzzer target for the profiler's capture reader (controlplane/profiler/capture.h). The
// input is a whole .hprof file in an exactly-sized heap buffer (a read past it is an ASan
// report). Checks: decode never crashes; a version 2 capture it accepts re-encodes to the same
// bytes (one capture, one encoding; a version 1 file re-encodes as version 2 and decodes back to
// the same capture), and every sample has one value slot per series.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

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
    const std::string again = encode_capture(*c);
    if (bytes[8] == herald::profiler::kFormatVersion) {
      FUZZ_CHECK(again == bytes);
      return;
    }
    absl::StatusOr<Capture> back = decode_capture(again);
    FUZZ_CHECK(back.ok() && back->meta == c->meta && back->series == c->series &&
               back->samples == c->samples && back->flame == c->flame);
  };
  std::unique_ptr<char[]> copy(new char[size]);
  if (size != 0) std::memcpy(copy.get(), data, size);
  check(std::string_view(copy.get(), size));

  // The body as given, under a valid header and trailer: version 1, version 2 without and with
  // the flame section (so the fuzzer reaches that parser too).
  const std::pair<uint16_t, uint16_t> headers[] = {
      {1, 0},
      {herald::profiler::kFormatVersion, 0},
      {herald::profiler::kFormatVersion, herald::profiler::kFlagFlame}};
  for (const auto& [version, flags] : headers) {
    std::string fixed = encode_capture(Capture{}).substr(0, 20);
    fixed[8] = static_cast<char>(version & 0xff);
    fixed[10] = static_cast<char>(flags & 0xff);
    fixed.append(reinterpret_cast<const char*>(data), size);
    const uint64_t total = fixed.size() + 4;
    for (int i = 0; i < 8; ++i) fixed[12 + i] = static_cast<char>((total >> (8 * i)) & 0xff);
    const uint32_t crc = herald::crc32c::value(fixed.data(), fixed.size());
    for (int i = 0; i < 4; ++i) fixed.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
    check(fixed);
  }
  return 0;
}
