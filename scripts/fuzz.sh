#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [BUILD_DIR]: builds the libFuzzer targets of fuzz/ with clang
# (AddressSanitizer, UndefinedBehaviorSanitizer, coverage through the libraries they parse
# with) into build-fuzz/ and runs each for SECONDS (default 60) over its corpus in
# fuzz/corpus/<target>/, which keeps what it finds, with the dictionary fuzz/<target>.dict where
# there is one. A crash stops the run and leaves the input in build-fuzz/crash-<target>-*; turn
# it into a corpus entry with the fix.
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
status=0
for source in "$root"/fuzz/*_fuzz.cc; do
  target=$(basename "$source" .cc)
  corpus=$root/fuzz/corpus/$target
  mkdir -p "$corpus"
  dict=()
  if [[ -f $root/fuzz/$target.dict ]]; then dict=(-dict="$root/fuzz/$target.dict"); fi
  echo "== $target: $seconds s"
  if ! "$build/fuzz/$target" "$corpus" "${dict[@]}" -max_total_time="$seconds" -max_len=65536 \
      -artifact_prefix="$build/crash-$target-" -print_final_stats=1 \
      >"$build/$target.log" 2>&1; then
    status=1
    tail -n 30 "$build/$target.log"
  fi
  grep -E "stat::number_of_executed_units|cov:" "$build/$target.log" | tail -n 2
done
exit "$status"
