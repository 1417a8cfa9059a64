#!/usr/bin/env bash
# scripts/check-sanitizers.sh asan|tsan [BUILD_DIR]: builds the torch-free unit tests with
# AddressSanitizer + UndefinedBehaviorSanitizer (asan) or ThreadSanitizer (tsan) into their own
# build folder (build-asan, build-tsan) and runs them; any finding fails the run. Under asan the
# fuzz targets' corpora are replayed too. CI runs the asan check after `make test`.
#
# Debian's Abseil is built without ThreadSanitizer, so absl::Mutex's locking would be invisible
# to it and every access under an absl::MutexLock from two threads would look like a race; the
# tsan build links tests/support/tsan_absl_sync.cc into every program, which gives ThreadSanitizer
# the lock annotations an instrumented Abseil makes, and checks first that they work and that an
# unguarded race is still reported (tsan_self_check). gRPC is not instrumented either: the
# coordinator's callback reactors are created, resumed and finished on gRPC's threads, handed over
# through its completion queue, so tests/support/tsan_grpc_sync.cc annotates that hand-over (an
# operation's start before its callback) and coordinator/service.cc the ones through gRPC's
# executor (a reactor's callbacks and Finish before its OnDone). What ThreadSanitizer still cannot
# see is the ordering inside uninstrumented libraries (gRPC, OpenSSL, protobuf, parts of Abseil):
# scripts/tsan-suppressions.txt names each of them, with its reason, and nothing of Hansa's.
#
# Without CUDA (nvcc's host code would need the sanitizer flags, and no kernel can run here): the
# kernels' CPU reference is built and checked either way.
#
# Torch-free: LibTorch is not built with the sanitizers, so its tests (trainer, simulator,
# real-process federations) stay in `make test`. Every test below links no LibTorch (a ctest
# check, coordinator_links_no_torch, keeps the coordinator so).
set -euo pipefail
mode=${1:?usage: scripts/check-sanitizers.sh asan|tsan [BUILD_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-$mode}
case $mode in
  asan)
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    annotate=OFF
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    ;;
  tsan)
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    annotate=ON
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/tsan-suppressions.txt}
    ;;
  *) echo "unknown mode '$mode' (asan or tsan)" >&2; exit 2 ;;
esac
tests=(audit_test client_data_test clock_test config_test coordinator_test crypto_test disk_faults_test
  metrics_test net_tls_test partition_test pki_test plan_test privacy_accounts_test privacy_test report_test
  secagg_test service_test site_contributions_test site_link_test site_session_test
  strategy_test tensor_test wire_test pki_enrollment_test monitoring_http_server_test
  monitoring_config_test federation_status_test dashboard_test logging_test signal_watcher_test
  site_report_test site_page_test cores_test shared_bytes_test chunk_wire_test)

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" \
  -DHANSA_TSAN_ABSL_ANNOTATIONS=$annotate -DHANSA_WITH_CUDA=OFF >/dev/null
targets=("${tests[@]}")
[ "$mode" = tsan ] && targets+=(tsan_self_check)
# Under asan, every fuzz target also replays its corpus (fuzz/corpus/<target>/), so inputs that
# once crashed a parser under a sanitizer, such as an unaligned chunk, are checked under one.
fuzzers=()
if [ "$mode" = asan ]; then
  for source in "$root"/fuzz/*_fuzz.cc; do fuzzers+=("$(basename "$source" .cc)"); done
  for f in "${fuzzers[@]}"; do targets+=("${f}_replay"); done
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
if [ "$mode" = tsan ]; then
  # The instruments first: a race under absl::Mutex must pass, a race without a lock must not.
  "$build/tsan_self_check" guarded || { echo "tsan: absl lock annotations missing" >&2; exit 1; }
  if "$build/tsan_self_check" unguarded >"$build/tsan_self_check.log" 2>&1 ||
      ! grep -q "data race" "$build/tsan_self_check.log"; then
    echo "tsan: ThreadSanitizer did not report an unguarded race" >&2
    exit 1
  fi
  echo "== tsan: self-check (lock annotations present, unguarded race reported)"
fi
failed=()
for t in "${tests[@]}"; do
  binary=$(find "$build/tests" -type f -name "$t" -perm -u+x | head -n 1)
  echo "== $mode: $t"
  if ! HANSA_BUILD_DIR=$build HANSA_SOURCE_DIR=$root "$binary" --gtest_brief=1 \
      >"$build/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$build/$t.log"
  fi
done
for f in "${fuzzers[@]}"; do
  echo "== $mode: ${f} corpus"
  if ! "$build/fuzz/${f}_replay" "$root/fuzz/corpus/$f" >"$build/$f.log" 2>&1; then
    failed+=("${f}_replay")
    tail -n 40 "$build/$f.log"
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "$mode: findings or failures in: ${failed[*]} (logs in $build/<test>.log)" >&2
  exit 1
fi
echo "$mode: ${#tests[@]} test programs clean${fuzzers:+, and ${#fuzzers[@]} fuzz corpora}"
