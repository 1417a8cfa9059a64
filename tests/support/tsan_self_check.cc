// The ThreadSanitizer build's check of its own instruments (scripts/check-sanitizers.sh tsan):
// `tsan_self_check guarded` makes two threads write one counter under an absl::Mutex and hand
// a value over through an absl::CondVar, which must pass without a report (the lock annotations
// of tsan_absl_sync.cc are in place); `tsan_self_check unguarded` makes them write it with no lock,
// which ThreadSanitizer must report (it is really watching).
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {

int Guarded() {
  absl::Mutex mu;
  absl::CondVar handed;
  long counter = 0;
  long handoff = 0;
  bool ready = false;
  std::thread other([&] {
    for (int i = 0; i < 10000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
    handoff = 42;  // ordered by the CondVar hand-over below, not by a lock held here
    absl::MutexLock lock(&mu);
    ready = true;
    handed.Signal();
  });
  for (int i = 0; i < 10000; ++i) {
    absl::MutexLock lock(&mu);
    ++counter;
  }
  {
    absl::MutexLock lock(&mu);
    while (!ready) handed.Wait(&mu);
  }
  const long seen = handoff;
  other.join();
  return counter == 20000 && seen == 42 ? 0 : 1;
}

int Unguarded() {
  volatile long counter = 0;
  std::thread other([&] {
    for (int i = 0; i < 10000; ++i) counter = counter + 1;
  });
  for (int i = 0; i < 10000; ++i) counter = counter + 1;
  other.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) return Guarded();
  if (argc == 2 && std::strcmp(argv[1], "unguarded") == 0) return Unguarded();
  std::fprintf(stderr, "usage: tsan_self_check guarded|unguarded\n");
  return 2;
}
