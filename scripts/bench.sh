#!/usr/bin/env bash
# Runs every benchmark binary of a build and keeps the results with the machine's ceilings.
#
#   scripts/bench.sh BUILD_DIR [NAME...]     (make bench calls it with the build dir)
#
# NAME limits the run to some binaries (e.g. transfer_bench). Writes to $BENCH_OUT
# (default bench-results/):
#   <name>.json            Google Benchmark JSON of each binary, <name>.log its stderr
#   machine.txt            nproc, CPU model, memory, kernel, load average at the start
#   openssl-speed.txt      `openssl speed -evp chacha20` (the mask PRG) and aes-128-gcm (TLS 1.3)
# then prints one line per benchmark with its counters. Benchmarks share the machine with
# whatever else runs; the load average in machine.txt says how quiet it was.
set -euo pipefail

build=${1:?usage: scripts/bench.sh BUILD_DIR [NAME...]}
shift
out=${BENCH_OUT:-bench-results}
mkdir -p "$out"

# Every *_bench executable the build produced (bench/ and module folders such as cuda/).
mapfile -t binaries < <(find "$build" -maxdepth 3 -type f -name '*_bench' -perm -u+x \
  -not -path '*/CMakeFiles/*' | sort)
if [ $# -gt 0 ]; then
  wanted=()
  for b in "${binaries[@]}"; do
    for n in "$@"; do [ "$(basename "$b")" = "$n" ] && wanted+=("$b"); done
  done
  binaries=("${wanted[@]}")
fi
if [ ${#binaries[@]} -eq 0 ]; then
  echo "bench: no *_bench binaries under $build; build with -DHANSA_BUILD_BENCH=ON" >&2
  exit 1
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v lscpu >/dev/null && lscpu
} >"$out/machine.txt"

echo "bench: openssl speed (ChaCha20 and AES-128-GCM, 2 s each)"
{
  openssl version
  openssl speed -evp chacha20 -seconds 2 2>&1
  openssl speed -evp aes-128-gcm -seconds 2 2>&1
} >"$out/openssl-speed.txt"

failed=()
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  echo "bench: $name"
  if ! "$bin" --benchmark_format=json --benchmark_out="$out/$name.json" \
    --benchmark_out_format=json >/dev/null 2>"$out/$name.log"; then
    failed+=("$name")
    echo "bench: $name failed; see $out/$name.log" >&2
    tail -3 "$out/$name.log" >&2 || true
  fi
done

# The summary: name, then every user counter (Google Benchmark writes one key per line).
echo
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk 'tolower($1) ~ /^(chacha20|aes-128-gcm)$/ && NF == 7 {
  v = $NF; sub(/k$/, "", v); printf "== openssl %s: %.0f MB/s (16 KiB blocks, one core)\n", $1, v / 1000 }' \
  "$out/openssl-speed.txt"
for json in "$out"/*.json; do
  [ -f "$json" ] || continue
  echo "== $(basename "$json" .json)"
  awk '
    function flush() { if (name != "") printf "  %-70s %s\n", name, counters; name = ""; counters = "" }
    /^      "name":/ { flush(); name = $2; gsub(/[",]/, "", name); next }
    /^      "error_message":/ { counters = counters " ERROR " $0; next }
    /^      "time_unit":/ { unit = $2; gsub(/[",]/, "", unit); sub(/time=[^ ]*/, "&" unit, counters); next }
    /^      "[A-Za-z_]+": -?[0-9]/ {
      key = $1; gsub(/[":]/, "", key); value = $2; gsub(/,/, "", value)
      if (key ~ /^(family_index|per_family_instance_index|repetitions|repetition_index|threads|iterations|cpu_time)$/) next
      if (key == "real_time") { counters = counters sprintf(" time=%.4g", value); next }
      if (key == "bytes_per_second") { counters = counters sprintf(" MB/s=%.4g", value / 1e6); next }
      if (key == "items_per_second") { counters = counters sprintf(" items/s=%.4g", value); next }
      counters = counters sprintf(" %s=%.4g", key, value)
    }
    /^  \]/ { flush() }
    END { flush() }' "$json"
done
echo
echo "bench: results in $out/"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
