// Where a log line or an assertion comes from, captured at the call site.
// Not std::source_location: libstdc++ 12 implements it with __builtin_source_location, which
// clang 14 (the libFuzzer compiler on Debian 12) lacks. The __builtin_FILE/LINE/FUNCTION
// builtins exist in both g++ and clang and give the same three facts.
#pragma once

#include <cstdint>

namespace herald {

class SourceLocation {
 public:
  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          uint32_t line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) {
    return SourceLocation(file, line, function);
  }
  constexpr const char* file_name() const { return file_; }
  constexpr uint32_t line() const { return line_; }
  constexpr const char* function_name() const { return function_; }

 private:
  constexpr SourceLocation(const char* file, uint32_t line, const char* function)
      : file_(file), line_(line), function_(function) {}
  const char* file_;
  uint32_t line_;
  const char* function_;
};

}  // namespace herald
