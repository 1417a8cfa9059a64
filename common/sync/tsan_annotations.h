// Happens-before annotations for ThreadSanitizer, at the points where Hansa's code hands an
// object to a library that is not instrumented (gRPC's completion queue, its executor) and gets
// it back on another thread. ThreadSanitizer cannot see the library's own ordering there; these
// tell it: HANSA_TSAN_RELEASE(key) on the handing thread, HANSA_TSAN_ACQUIRE(key) on the receiving
// one, for the same key (any address, usually the object's). Each use says in one line which
// ordering of the library it stands for, and must stand for a real one: a release/acquire pair
// the library does not guarantee would hide races instead of revealing them.
//
// Without ThreadSanitizer (every normal build) both macros are empty statements.
//
// Threading: the macros may be used from any thread.
#ifndef HANSA_COMMON_SYNC_TSAN_ANNOTATIONS_H_
#define HANSA_COMMON_SYNC_TSAN_ANNOTATIONS_H_

#if defined(__SANITIZE_THREAD__)
#define HANSA_TSAN_ENABLED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HANSA_TSAN_ENABLED 1
#endif
#endif

#ifdef HANSA_TSAN_ENABLED
#include <sanitizer/tsan_interface.h>

#define HANSA_TSAN_RELEASE(key) \
  __tsan_release(const_cast<void*>(static_cast<const volatile void*>(key)))
#define HANSA_TSAN_ACQUIRE(key) \
  __tsan_acquire(const_cast<void*>(static_cast<const volatile void*>(key)))
#else
#define HANSA_TSAN_RELEASE(key) static_cast<void>(0)
#define HANSA_TSAN_ACQUIRE(key) static_cast<void>(0)
#endif

#endif  // HANSA_COMMON_SYNC_TSAN_ANNOTATIONS_H_
