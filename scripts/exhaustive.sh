#!/usr/bin/env bash
# Every SecAgg+ dropout pattern of every federation of 3..SITES sites, clean and with replayed,
# stale and out-of-order messages (tests/unit/secagg/exhaustive_dropout_test.cc), split over
# JOBS processes (HANSA_EXHAUSTIVE_SHARD=i/JOBS: each takes every JOBS-th pattern). For n = 6
# and 7, which take hours of CPU, run it on a machine with many cores, or give each machine
# its own SHARDS range.
#
#   scripts/exhaustive.sh [SITES] [BUILD_DIR]      (make check-exhaustive; SITES 5, JOBS nproc)
#
# Environment: JOBS (nproc) processes; SHARDS ("0..JOBS-1" of JOBS) picks which of them run
# here, as "FIRST-LAST/TOTAL", for spreading one run over machines. Each shard's log is
# EXHAUSTIVE_OUT/shard-i.log (default exhaustive-results/). Prints each shard's tally and exits
# 1 if any failed. REPLAYS_ONLY=1 runs only the second test, which runs each pattern clean (with
# the first test's checks) and then with replayed messages: about 60 % of the time of both.
set -euo pipefail
sites=${1:-5}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/tests/unit/secagg/secagg_test
[ -x "$bin" ] || { echo "exhaustive: $bin is missing; build secagg_test first" >&2; exit 2; }
jobs=${JOBS:-$(nproc)}
range=${SHARDS:-0-$((jobs - 1))/$jobs}
first=${range%%-*}
rest=${range#*-}
last=${rest%%/*}
total=${rest#*/}
out=${EXHAUSTIVE_OUT:-exhaustive-results}
filter='ExhaustiveDropoutTest.*'
[ "${REPLAYS_ONLY:-0}" = 1 ] && filter='ExhaustiveDropoutTest.ReplayedStaleAndOutOfOrderMessagesAreRefusedWithoutEffect'

mkdir -p "$out"
echo "exhaustive: n = 3..$sites, shards $first..$last of $total, logs in $out/"
start=$(date +%s)
pids=()
for i in $(seq "$first" "$last"); do
  HANSA_EXHAUSTIVE_SITES=$sites HANSA_EXHAUSTIVE_SHARD=$i/$total \
    "$bin" --gtest_filter="$filter" >"$out/shard-$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  shard=$((first + i))
  if wait "${pids[$i]}"; then
    echo "shard $shard/$total: $(grep -h 'rounds:' "$out/shard-$shard.log" | paste -sd ';' -)"
  else
    status=1
    echo "shard $shard/$total FAILED:" >&2
    grep -h -B2 -A10 'Failure' "$out/shard-$shard.log" | head -n 40 >&2 || tail -n 30 "$out/shard-$shard.log" >&2
  fi
done
echo "exhaustive: $(( $(date +%s) - start )) s wall"
exit "$status"
