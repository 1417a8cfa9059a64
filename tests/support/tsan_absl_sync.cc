// ThreadSanitizer annotations for Debian's Abseil synchronization library, linked into every
// program of the ThreadSanitizer build only (scripts/check-sanitizers.sh tsan sets
// HANSA_TSAN_ABSL_ANNOTATIONS).
//
// Why: Debian builds libabsl_synchronization without -fsanitize=thread, so absl::Mutex and
// absl::CondVar take and release their locks in code ThreadSanitizer cannot see, and every access
// made under an absl::MutexLock from two threads looks like a data race (it is not: the lock
// orders them). Abseil built with ThreadSanitizer tells it about each lock through the
// __tsan_mutex_* interface; Debian's build leaves those calls out. This file puts them back from
// outside: it defines the library's lock entry points in the program, which interposes them for
// the program and for the shared libraries it loads (gRPC's locks are absl::Mutex too), and each
// definition calls the library's own function (dlsym RTLD_NEXT) inside the annotations that an
// instrumented Abseil makes. Nothing is suppressed: every lock still orders exactly the accesses
// it orders, and a race on data that no lock guards is still reported. The destructor is left
// alone: ThreadSanitizer forgets a lock's state when its memory is freed, and an annotation there
// would report gRPC's destruction of its locks, ordered by reference counts it cannot see.
//
// Abseil's own lock-order (deadlock) detection is switched off in these programs: its graph of
// locks is guarded by a spin lock ThreadSanitizer cannot see either, and ThreadSanitizer checks
// the lock order itself (detect_deadlocks) through the annotations below.
//
// The mangled names are those of Debian 12's Abseil (inline namespace debian3); a program whose
// Abseil lacks one stops at its first lock with a message naming it.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace {

// The library's definition of `symbol`, looked up once; aborts when the library lacks it.
void* Real(const char* symbol) {
  void* function = dlsym(RTLD_NEXT, symbol);
  if (function == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: Abseil has no %s (not Debian 12's Abseil?)\n", symbol);
    std::abort();
  }
  return function;
}

template <typename Fn>
Fn RealAs(const char* symbol) {
  return reinterpret_cast<Fn>(Real(symbol));
}

// Abseil's entry points call one another (CondVar::WaitWithTimeout calls WaitWithDeadline), and
// such inner calls reach the definitions below too: only the outermost one annotates.
thread_local int depth = 0;
class Outermost {
 public:
  Outermost() : outermost_(depth++ == 0) {}
  ~Outermost() { --depth; }
  Outermost(const Outermost&) = delete;
  Outermost& operator=(const Outermost&) = delete;
  explicit operator bool() const { return outermost_; }

 private:
  const bool outermost_;
};

// The annotations an instrumented Abseil makes around taking and releasing `mu`, once.
void Locked(const Outermost& call, void* mu, unsigned flags) {
  if (!call) return;
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}
void Unlocking(const Outermost& call, void* mu, unsigned flags) {
  if (!call) return;
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}

// Before main and before any lock is taken.
__attribute__((constructor)) void IgnoreAbseilDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

constexpr unsigned kWrite = 0;
constexpr unsigned kRead = __tsan_mutex_read_lock;

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto real = RealAs<void (*)(Mutex*)>("_ZN4absl7debian35Mutex4LockEv");
  const Outermost call;
  real(this);
  Locked(call, this, kWrite);
}

void Mutex::ReaderLock() {
  static const auto real = RealAs<void (*)(Mutex*)>("_ZN4absl7debian35Mutex10ReaderLockEv");
  const Outermost call;
  real(this);
  Locked(call, this, kRead);
}

bool Mutex::TryLock() {
  static const auto real = RealAs<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex7TryLockEv");
  const Outermost call;
  const bool locked = real(this);
  if (locked) Locked(call, this, kWrite | __tsan_mutex_try_lock);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto real = RealAs<bool (*)(Mutex*)>("_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const Outermost call;
  const bool locked = real(this);
  if (locked) Locked(call, this, kRead | __tsan_mutex_try_lock);
  return locked;
}

void Mutex::Unlock() {
  static const auto real = RealAs<void (*)(Mutex*)>("_ZN4absl7debian35Mutex6UnlockEv");
  const Outermost call;
  Unlocking(call, this, kWrite);
  real(this);
}

void Mutex::ReaderUnlock() {
  static const auto real = RealAs<void (*)(Mutex*)>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  const Outermost call;
  Unlocking(call, this, kRead);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = RealAs<void (*)(Mutex*, const Condition&)>(
      "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  const Outermost call;
  real(this, cond);
  Locked(call, this, kWrite);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = RealAs<void (*)(Mutex*, const Condition&)>(
      "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  const Outermost call;
  real(this, cond);
  Locked(call, this, kRead);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost call;
  const bool met = real(this, cond, timeout);
  Locked(call, this, kWrite);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost call;
  const bool met = real(this, cond, deadline);
  Locked(call, this, kWrite);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost call;
  const bool met = real(this, cond, timeout);
  Locked(call, this, kRead);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost call;
  const bool met = real(this, cond, deadline);
  Locked(call, this, kRead);
  return met;
}

// Await releases the lock while it waits and holds it again when it returns.
void Mutex::Await(const Condition& cond) {
  static const auto real =
      RealAs<void (*)(Mutex*, const Condition&)>("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  const Outermost call;
  Unlocking(call, this, kWrite);
  real(this, cond);
  Locked(call, this, kWrite);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost call;
  Unlocking(call, this, kWrite);
  const bool met = real(this, cond, timeout);
  Locked(call, this, kWrite);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = RealAs<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost call;
  Unlocking(call, this, kWrite);
  const bool met = real(this, cond, deadline);
  Locked(call, this, kWrite);
  return met;
}

// A condition-variable wait releases `mu` and holds it again when it returns.
void CondVar::Wait(Mutex* mu) {
  static const auto real =
      RealAs<void (*)(CondVar*, Mutex*)>("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  const Outermost call;
  Unlocking(call, mu, kWrite);
  real(this, mu);
  Locked(call, mu, kWrite);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto real = RealAs<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  const Outermost call;
  Unlocking(call, mu, kWrite);
  const bool timed_out = real(this, mu, timeout);
  Locked(call, mu, kWrite);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto real = RealAs<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  const Outermost call;
  Unlocking(call, mu, kWrite);
  const bool timed_out = real(this, mu, deadline);
  Locked(call, mu, kWrite);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
