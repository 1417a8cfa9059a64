// ThreadSanitizer annotations for the hand-over through Debian's gRPC completion queue, linked
// into every program of the ThreadSanitizer build only, beside tsan_absl_sync.cc (the build
// option HANSA_TSAN_ABSL_ANNOTATIONS).
//
// Why: with gRPC's callback API an operation (a write, a read, a call's finish) is set up on one
// thread by gRPC's header code, which is compiled into Hansa's programs with ThreadSanitizer: it
// fills the operation's callback tag, serializes the message (Hansa's own, e.g. a Chunk), and
// calls grpc_call_start_batch. libgrpc (not instrumented) then runs the tag's functor_run on one
// of its own threads, which reads the tag and calls the reactor's OnWriteDone/OnReadDone. The
// completion queue orders the two, with atomics ThreadSanitizer cannot see, so every access of
// the setting-up thread looks unordered with the callback.
//
// What: this file defines grpc_call_start_batch in the program, which interposes it for libgrpc++
// (the only caller of gRPC's C API here), and calls libgrpc's own (dlsym RTLD_NEXT) after a
// __tsan_release on the tag. A tag whose functor_run is code of this program (gRPC's header tags,
// CallbackWithSuccessTag and CallbackWithStatusTag, compiled into it) gets a trampoline in its
// place that does the matching __tsan_acquire on the tag and then runs the tag's own function.
// That pair is exactly the completion queue's guarantee: the batch started before its tag runs.
// Tags of the other APIs (the synchronous one's CallOpSets, whose first word is a vtable, not
// code) and libgrpc++'s own functors are passed through untouched. Nothing is suppressed.
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <link.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace {

using StartBatch = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);
using FunctorRun = void (*)(grpc_completion_queue_functor*, int);

// The program's own executable code (its PT_LOAD segments with PF_X), where gRPC's header tags'
// functions are.
struct CodeRange {
  uintptr_t begin = 0;
  uintptr_t end = 0;
};
int FindProgramCode(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0') return 0;  // a shared library
  auto* range = static_cast<CodeRange*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    range->begin = info->dlpi_addr + segment.p_vaddr;
    range->end = range->begin + segment.p_memsz;
  }
  return 1;  // the program comes first
}
const CodeRange& ProgramCode() {
  static const CodeRange range = [] {
    CodeRange r;
    dl_iterate_phdr(FindProgramCode, &r);
    return r;
  }();
  return range;
}

// The tag functions of the program seen so far, one slot each (there are two in gRPC 1.51's
// headers; a few to spare). Relaxed: a slot holds a function's address and orders nothing, and an
// ordering here would show ThreadSanitizer a hand-over that the program does not make.
constexpr int kSlots = 8;
std::atomic<FunctorRun> originals[kSlots];

template <int kSlot>
void AcquireThenRun(grpc_completion_queue_functor* tag, int ok) {
  __tsan_acquire(tag);  // pairs with the release in grpc_call_start_batch below
  originals[kSlot].load(std::memory_order_relaxed)(tag, ok);
}

template <int... kSlot>
constexpr FunctorRun kTrampolines[] = {&AcquireThenRun<kSlot>...};
template <size_t... kSlot>
constexpr const FunctorRun* Trampolines(std::index_sequence<kSlot...>) {
  return kTrampolines<static_cast<int>(kSlot)...>;
}
constexpr const FunctorRun* kTrampoline = Trampolines(std::make_index_sequence<kSlots>());

// The trampoline that runs `run` after the acquire, `run` itself when it is one already, or
// nullptr when all slots are taken.
FunctorRun TrampolineFor(FunctorRun run) {
  for (int i = 0; i < kSlots; ++i) {
    if (run == kTrampoline[i]) return run;
  }
  for (int i = 0; i < kSlots; ++i) {
    FunctorRun seen = originals[i].load(std::memory_order_relaxed);
    if (seen == nullptr &&
        originals[i].compare_exchange_strong(seen, run, std::memory_order_relaxed)) {
      return kTrampoline[i];
    }
    if (seen == run) return kTrampoline[i];
  }
  return nullptr;
}

}  // namespace

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  static const auto real = [] {
    void* function = dlsym(RTLD_NEXT, "grpc_call_start_batch");
    if (function == nullptr) {
      std::fprintf(stderr, "tsan_grpc_sync: no grpc_call_start_batch after the program's\n");
      std::abort();
    }
    return reinterpret_cast<StartBatch>(function);
  }();
  if (tag != nullptr) {
    auto* functor = static_cast<grpc_completion_queue_functor*>(tag);
    const auto first = reinterpret_cast<uintptr_t>(functor->functor_run);
    const CodeRange& code = ProgramCode();
    if (first >= code.begin && first < code.end) {
      FunctorRun trampoline = TrampolineFor(functor->functor_run);
      if (trampoline == nullptr) {
        std::fprintf(stderr, "tsan_grpc_sync: more than %d kinds of gRPC callback tags\n", kSlots);
        std::abort();
      }
      functor->functor_run = trampoline;
    }
    __tsan_release(tag);  // the batch, and all this thread did before it, precedes the tag's run
  }
  return real(call, ops, nops, tag, reserved);
}
