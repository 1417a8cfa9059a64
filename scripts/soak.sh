#!/usr/bin/env bash
# The soak: virtual sites over the loopback gRPC link (mutual TLS 1.3 on 127.0.0.1, each site a
# SiteSession with a fixed update; bench/soak.cc) for many rounds, first with secure aggregation
# (SecAgg+), then a shorter plaintext run. Every SOAK_EVERY rounds the soak samples its own
# resident memory (VmRSS, VmHWM), glibc heap, open descriptors and threads, and the median and
# slowest round time since the last sample.
#
#   scripts/soak.sh [BUILD_DIR]        (make soak; default build dir: build)
#
# Environment: SOAK_SITES (100), SOAK_ROUNDS (1000, secure), SOAK_PLAIN_ROUNDS (200),
# SOAK_EVERY (100), SOAK_WARMUP (100), SOAK_OUT (soak-results). Tolerances, after the warm-up
# and measured from the first sample at or after it: VmRSS +SOAK_MAX_RSS_MIB (32) MiB, open
# descriptors +SOAK_MAX_FDS (4), threads +SOAK_MAX_THREADS (4); and no round but the first
# (which includes every site's connection and join) slower than SOAK_MAX_RATIO (2) times the
# median round. Writes soak-<mode>.json (the report: every sample, every round's time, the
# verdict) and soak-<mode>.txt (the table) to SOAK_OUT, plus machine.txt. Exits 1 when a run
# breaks a tolerance or fails, 2 when the binary is missing. SOAK_MALLOC_INFO=DIR also writes
# glibc's malloc_info XML (free chunks by size, per arena) at every sample to DIR/<mode>/.
set -euo pipefail

build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/$build/bench/soak
[ -x "$bin" ] || { echo "soak: $bin is missing; build the soak target first" >&2; exit 2; }
out=${SOAK_OUT:-soak-results}
mkdir -p "$out"
sites=${SOAK_SITES:-100}
every=${SOAK_EVERY:-100}
warmup=${SOAK_WARMUP:-100}
# A descriptor per site connection on both sides of the loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$out/machine.txt"

failed=()
run() {
  local mode=$1 rounds=$2
  echo "soak: $mode, $sites sites, $rounds rounds (table in $out/soak-$mode.txt)" >&2
  local status=0 extra=()
  if [ -n "${SOAK_MALLOC_INFO:-}" ]; then
    mkdir -p "$SOAK_MALLOC_INFO/$mode"
    extra=(--malloc-info "$SOAK_MALLOC_INFO/$mode")
  fi
  "$bin" --sites "$sites" --rounds "$rounds" --mode "$mode" --report-every "$every" \
    --warmup-rounds "$warmup" --max-rss-growth-mib "${SOAK_MAX_RSS_MIB:-32}" \
    --max-fd-growth "${SOAK_MAX_FDS:-4}" --max-thread-growth "${SOAK_MAX_THREADS:-4}" \
    --max-round-ratio "${SOAK_MAX_RATIO:-2}" --json "$out/soak-$mode.json" "${extra[@]}" \
    2> >(tee "$out/soak-$mode.txt" >&2) || status=$?
  wait  # for tee
  [ "$status" -eq 0 ] || failed+=("$mode (exit $status)")
}

run secure "${SOAK_ROUNDS:-1000}"
run plaintext "${SOAK_PLAIN_ROUNDS:-200}"
echo "soak: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "soak: failed: ${failed[*]}; see $out/" >&2
  exit 1
fi
echo "soak: flat; results in $out/" >&2
