// Test harness for the HTTP request parser: feeds bytes in given pieces (whole, one byte at a
// time, seeded random splits) and records the completed requests with owned copies.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "controlplane/http/request_parser.h"
#include "gtest/gtest.h"

namespace herald::http::testing {

struct ParsedRequest {
  std::string method;
  std::string target;
  std::string path;
  std::string query;
  std::string authority;
  Version version = Version::kHttp11;
  BodyFraming framing = BodyFraming::kNone;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = false;
  bool expect_continue = false;
};

struct Outcome {
  std::vector<ParsedRequest> requests;
  ParseError error = ParseError::kNone;
  bool in_progress = false;  // a request was started but not completed
  uint64_t head_events = 0;
};

// Where to cut `size` bytes: a list of piece sizes summing to `size`.
inline std::vector<size_t> whole(size_t size) {
  return {size};
}
inline std::vector<size_t> bytewise(size_t size) {
  return std::vector<size_t>(size, 1);
}
inline std::vector<size_t> random_splits(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<size_t> pieces;
  size_t left = size;
  while (left > 0) {
    // Mostly short pieces, sometimes long ones, so both boundary styles are covered.
    const size_t max_piece = (rng() % 4 == 0) ? 64 : 7;
    const size_t n = std::min<size_t>(left, 1 + rng() % max_piece);
    pieces.push_back(n);
    left -= n;
  }
  return pieces;
}

// Feeds `input` cut into `pieces`. Each piece is copied into its own buffer which is destroyed
// after use, so a parser keeping a view into a previous piece would be caught by ASan.
inline Outcome feed(RequestParser& parser, std::string_view input,
                    const std::vector<size_t>& pieces) {
  Outcome out;
  ParsedRequest current;
  size_t offset = 0;
  for (size_t piece_size : pieces) {
    const std::string buffer(input.substr(offset, piece_size));
    offset += piece_size;
    std::string_view rest(buffer);
    for (bool more = true; more;) {
      const ParseStep step = parser.parse(rest);
      EXPECT_LE(step.consumed_bytes, rest.size());
      if (step.consumed_bytes > rest.size()) return out;
      switch (step.event) {
        case ParseEvent::kNeedMore:
          EXPECT_EQ(step.consumed_bytes, rest.size());
          more = false;
          break;
        case ParseEvent::kHeadersComplete: {
          ++out.head_events;
          const Request& r = parser.request();
          current = ParsedRequest{};
          current.method = r.method_name();
          current.target = r.target();
          current.path = r.path();
          current.query = r.query();
          current.authority = r.authority();
          current.version = r.version();
          current.framing = r.body_framing();
          current.keep_alive = r.keep_alive();
          current.expect_continue = r.expect_continue();
          for (const HeaderField& f : r.headers()) current.headers.emplace_back(f.name, f.value);
          break;
        }
        case ParseEvent::kBodyData:
          // The body is a view into this piece, ending where consumption ends.
          EXPECT_GE(step.body.data(), rest.data());
          EXPECT_EQ(step.body.data() + step.body.size(), rest.data() + step.consumed_bytes);
          current.body.append(step.body);
          break;
        case ParseEvent::kMessageComplete:
          EXPECT_EQ(current.body.size(), parser.body_bytes());
          out.requests.push_back(std::move(current));
          current = ParsedRequest{};
          break;
        case ParseEvent::kError:
          out.error = parser.error();
          EXPECT_NE(out.error, ParseError::kNone);
          return out;
      }
      rest.remove_prefix(step.consumed_bytes);
    }
  }
  // Drain an event that needs no bytes (a body-less request completes on the next call).
  for (;;) {
    const ParseStep step = parser.parse({});
    if (step.event == ParseEvent::kMessageComplete) {
      out.requests.push_back(std::move(current));
      current = ParsedRequest{};
      continue;
    }
    if (step.event == ParseEvent::kError) out.error = parser.error();
    break;
  }
  out.in_progress = parser.in_progress();
  return out;
}

// The same input cut every way the tests use: whole, bytewise, and `seeds` random splits.
inline std::vector<std::pair<std::string, std::vector<size_t>>> all_splits(size_t size,
                                                                           uint32_t seeds = 16) {
  std::vector<std::pair<std::string, std::vector<size_t>>> out;
  out.emplace_back("whole", whole(size));
  out.emplace_back("bytewise", bytewise(size));
  for (uint32_t seed = 1; seed <= seeds; ++seed) {
    out.emplace_back("seed " + std::to_string(seed), random_splits(size, seed));
  }
  return out;
}

}  // namespace herald::http::testing
