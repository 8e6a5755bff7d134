// Assertions in three tiers, after Envoy's RELEASE_ASSERT / ASSERT / ENVOY_BUG:
//   HERALD_CHECK(cond, msg)    always on; for cheap invariants whose violation makes going on
//                              unsafe (corrupt memory, broken durability). Aborts.
//   HERALD_DCHECK(cond, msg)   debug builds only (NDEBUG unset); for expensive checks on hot
//                              paths. Compiled out, but still type-checked, in release.
//   HERALD_BUG_IF(cond, msg)   a bug we can survive: logs (rate limited), bumps bug_count(),
//                              and aborts only in debug builds, so tests catch it while a
//                              release node keeps serving.
// Never assert on untrusted input (packets, frames, HTTP, files on disk): that takes an error
// path with a named counter instead.
#pragma once

#include <cstdint>

#include "platform/assert/source_location.h"

namespace herald {

[[noreturn]] void check_failed(const char* expr, const char* msg, SourceLocation loc);

// Records a survivable bug: log line (rate limited) + counter; aborts when abort_on_bug() is on.
void report_bug(const char* expr, const char* msg, SourceLocation loc);

// Number of HERALD_BUG_IF reports since start (all threads).
uint64_t bug_count();

// Debug builds abort on a bug by default; tests of the release behaviour turn that off.
void set_abort_on_bug(bool abort_on_bug);
bool abort_on_bug();

namespace detail {
inline bool bug_if(bool failed, const char* expr, const char* msg, SourceLocation loc) {
  if (__builtin_expect(failed, 0)) [[unlikely]] {
    report_bug(expr, msg, loc);
    return true;
  }
  return false;
}
}  // namespace detail

}  // namespace herald

#define HERALD_CHECK(cond, msg)                                                  \
  do {                                                                           \
    if (__builtin_expect(!(cond), 0)) [[unlikely]]                               \
      ::herald::check_failed(#cond, (msg), ::herald::SourceLocation::current()); \
  } while (0)

#ifdef NDEBUG
#define HERALD_DCHECK(cond, msg) \
  do {                           \
    if (false) {                 \
      (void)(cond);              \
      (void)(msg);               \
    }                            \
  } while (0)
#define HERALD_DEBUG_BUILD 0
#else
#define HERALD_DCHECK(cond, msg) HERALD_CHECK(cond, msg)
#define HERALD_DEBUG_BUILD 1
#endif

// Evaluates to `cond`, so it can guard a recovery path:
//   if (HERALD_BUG_IF(slot == nullptr, "free list empty")) return Error::kNoMemory;
#define HERALD_BUG_IF(cond, msg) \
  ::herald::detail::bug_if(!!(cond), #cond, (msg), ::herald::SourceLocation::current())
