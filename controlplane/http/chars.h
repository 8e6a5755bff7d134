// Character classes of HTTP/1.1 (RFC 9110 §5.6.2 tokens, §5.5 field values; RFC 3986 URI
// characters) as one 256-entry table, so each byte costs one load and a mask. Internal.
#pragma once

#include <array>
#include <cstdint>

namespace herald::http::chars {

inline constexpr uint8_t kToken = 1 << 0;       // tchar
inline constexpr uint8_t kFieldValue = 1 << 1;  // VCHAR / obs-text / SP / HTAB
inline constexpr uint8_t kTarget = 1 << 2;      // pchar + "/" + "?" ("%" checked apart)
inline constexpr uint8_t kHex = 1 << 3;         // HEXDIG
inline constexpr uint8_t kRegName = 1 << 4;     // unreserved / sub-delims (plus "%")

constexpr std::array<uint8_t, 256> make_table() {
  std::array<uint8_t, 256> t{};
  auto set = [&t](const char* s, uint8_t bit) {
    for (; *s != '\0'; ++s) t[static_cast<uint8_t>(*s)] |= bit;
  };
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kToken | kTarget | kRegName;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kToken | kTarget | kRegName;
  for (int c = '0'; c <= '9'; ++c) t[c] |= kToken | kTarget | kRegName | kHex;
  for (int c = 'a'; c <= 'f'; ++c) t[c] |= kHex;
  for (int c = 'A'; c <= 'F'; ++c) t[c] |= kHex;
  set("!#$%&'*+-.^_`|~", kToken);
  // RFC 3986: unreserved "-._~", sub-delims "!$&'()*+,;=", and ":@/?" in paths and queries.
  set("-._~!$&'()*+,;=:@/?%", kTarget);
  set("-._~!$&'()*+,;=%", kRegName);
  for (int c = 0x21; c <= 0x7e; ++c) t[c] |= kFieldValue;
  for (int c = 0x80; c <= 0xff; ++c) t[c] |= kFieldValue;
  t[' '] |= kFieldValue;
  t['\t'] |= kFieldValue;
  return t;
}

inline constexpr std::array<uint8_t, 256> kTable = make_table();

inline bool is(char c, uint8_t cls) {
  return (kTable[static_cast<uint8_t>(c)] & cls) != 0;
}
inline bool is_token(char c) {
  return is(c, kToken);
}
inline bool is_hex(char c) {
  return is(c, kHex);
}
inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

inline uint8_t hex_value(char c) {
  if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
  return static_cast<uint8_t>((c | 0x20) - 'a' + 10);
}

}  // namespace herald::http::chars
