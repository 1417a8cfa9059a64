#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [BUILD_DIR]: builds the libFuzzer targets of fuzz/ with clang
# (AddressSanitizer, UndefinedBehaviorSanitizer, coverage through the libraries they parse
# with) into build-fuzz/ and runs each for SECONDS (default 60), or until FUZZ_RUNS executions
# when that is set and comes first, over its corpus in fuzz/corpus/<target>/, with the
# dictionary fuzz/<target>.dict where there is one. FUZZ_TARGETS (names without _fuzz, space
# separated) picks targets and their order; the default is every target.
#
# New inputs go to a working corpus, build-fuzz/corpus/<target>/, not into the repository; at the
# end of each run libFuzzer merges into fuzz/corpus/<target>/ only the inputs that add coverage,
# so the committed corpus stays small. A crash stops that target's run and leaves the input in
# build-fuzz/crash-<target>-*; turn it into a corpus entry with the fix. The last lines of each
# run (executions, coverage, features) are in build-fuzz/<target>.log.
#
#   make fuzz FUZZ_SECONDS=3600 FUZZ_RUNS=10000000      (the issue's bar: 10 M runs or an hour)
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-fuzz}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
"$root/scripts/install-deps.sh" clang libclang-rt-14-dev  # libFuzzer
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHANSA_FUZZ=ON \
  -DHANSA_BUILD_TESTS=OFF -DHANSA_BUILD_BENCH=OFF -DHANSA_WITH_CUDA=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_targets
targets=()
if [[ -n ${FUZZ_TARGETS:-} ]]; then
  for name in $FUZZ_TARGETS; do targets+=("${name%_fuzz}_fuzz"); done
else
  for source in "$root"/fuzz/*_fuzz.cc; do targets+=("$(basename "$source" .cc)"); done
fi
runs=()
if [[ -n ${FUZZ_RUNS:-} ]]; then runs=(-runs="$FUZZ_RUNS"); fi
status=0
for target in "${targets[@]}"; do
  [[ -x $build/fuzz/$target ]] || { echo "fuzz: no target $target" >&2; exit 2; }
  corpus=$root/fuzz/corpus/$target
  work=$build/corpus/$target
  mkdir -p "$corpus" "$work"
  dict=()
  if [[ -f $root/fuzz/$target.dict ]]; then dict=(-dict="$root/fuzz/$target.dict"); fi
  echo "== $target: $seconds s${FUZZ_RUNS:+ or $FUZZ_RUNS runs}"
  if ! "$build/fuzz/$target" "$work" "$corpus" "${dict[@]}" "${runs[@]}" \
      -max_total_time="$seconds" -max_len=65536 \
      -artifact_prefix="$build/crash-$target-" -print_final_stats=1 \
      >"$build/$target.log" 2>&1; then
    status=1
    tail -n 30 "$build/$target.log"
  fi
  grep -E "stat::number_of_executed_units|cov:" "$build/$target.log" | tail -n 2
  "$build/fuzz/$target" -merge=1 -max_len=65536 "$corpus" "$work" >"$build/$target.merge.log" 2>&1 ||
    { echo "fuzz: merging $target's new inputs failed (see $build/$target.merge.log)" >&2; status=1; }
done
exit "$status"
