// HERALD_TEST_ASAN is defined (1) in an AddressSanitizer build, under GCC
// (__SANITIZE_ADDRESS__) or clang (__has_feature). Tests that measure the heap with glibc's
// mallinfo2 or malloc_trim skip there: ASan's allocator is not glibc's.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define HERALD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HERALD_TEST_ASAN 1
#endif
#endif
