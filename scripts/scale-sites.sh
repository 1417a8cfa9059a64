#!/usr/bin/env bash
# How many sites one coordinator holds: for each N, provisions a federation of N + 1 sites
# (hansa provision), starts a real hansa-coordinator (model "mlp", one round, plaintext
# aggregation, rounds.min_sites = N + 1) and a site_swarm process of N sites over gRPC with
# mutual TLS 1.3 (bench/site_swarm.cc: each site a SiteSession with a fixed update). While all N
# wait for a task the swarm samples the coordinator's /proc/<pid>/status; then site N + 1 joins,
# the round runs with all of them, and it samples again. Prints one table row per N.
#
#   scripts/scale-sites.sh [build] [N ...]      (default: build 10 100 1000)
#
# HANSA_SCALE_DIR (scale-run) keeps each run's federation, logs and JSON; HANSA_SCALE_PORT
# (50700) is the first port used.
set -euo pipefail
build=${1:-build}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000)
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/$build
out=${HANSA_SCALE_DIR:-$root/scale-run}
port=${HANSA_SCALE_PORT:-50700}
for b in tools/hansa coordinator/hansa-coordinator bench/site_swarm; do
  [ -x "$bin/$b" ] || { echo "scale-sites: $bin/$b is missing; build it first" >&2; exit 2; }
done
# A connection per site on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The number after "key": in a JSON line.
field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }
kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
seconds() { awk -v s="$1" 'BEGIN { printf "%.2f", s }'; }

rows=()
for n in "${sizes[@]}"; do
  run=$out/n$n
  rm -rf "$run"
  mkdir -p "$run"
  args=()
  for i in $(seq 0 "$n"); do args+=(--site "$(printf 's%04d' "$i"):DE"); done
  "$bin/tools/hansa" provision --out "$run/federation" --federation scale \
    --coordinator coordinator:DE --listen "127.0.0.1:$port" "${args[@]}" >"$run/provision.txt"
  config=$run/federation/coordinator/coordinator.toml
  # Long enough for the swarm to sample the coordinator after the last site heard DONE.
  sed -i '/^\[coordinator\]$/a linger_seconds = 30' "$config"
  cat >>"$config" <<TOML

[model]
name = "mlp"
seed = 1

[rounds]
total = 1
min_sites = $((n + 1))
wait_for_sites_seconds = 3600
upload_timeout_seconds = 1800
evaluate_timeout_seconds = 1800
site_idle_seconds = 3600

[aggregation]
mode = "plaintext"
TOML
  "$bin/coordinator/hansa-coordinator" --config "$config" --log-level warn \
    >"$run/coordinator.log" 2>&1 &
  coordinator=$!
  trap 'kill $coordinator 2>/dev/null || true' EXIT
  echo "scale-sites: $n sites waiting, then one more starts the round (logs in $run)" >&2
  status=0
  "$bin/bench/site_swarm" --federation "$run/federation" --coordinator "127.0.0.1:$port" \
    --sites "$n" --coordinator-pid "$coordinator" >"$run/swarm.json" 2>"$run/swarm.log" ||
    status=$?
  kill "$coordinator" 2>/dev/null || true
  wait "$coordinator" 2>/dev/null || true
  trap - EXIT
  line=$(tail -1 "$run/swarm.json")
  if [ "$status" -ne 0 ] || [ -z "$line" ]; then
    echo "scale-sites: the swarm of $n failed ($status); see $run/swarm.log" >&2
    tail -5 "$run/swarm.log" >&2
    exit 1
  fi
  waiting=${line#*\"waiting\":}
  after=${line#*\"after_round\":}
  metrics=$(grep '"round":1,' "$run/federation/coordinator/state/metrics.jsonl" || true)
  rows+=("$(printf '| %5d | %7d | %9s | %7d | %9s | %9s | %9s | %9s |' "$n" \
    "$(field Threads "$waiting")" "$(kib_to_mib "$(field VmRSS "$waiting")")" \
    "$(field Threads "$after")" "$(kib_to_mib "$(field VmRSS "$after")")" \
    "$(kib_to_mib "$(field VmHWM "$after")")" "$(seconds "$(field round_seconds "$line")")" \
    "$(seconds "$(field seconds "$metrics")")")")
  port=$((port + 1))
done

echo "hansa-coordinator with N sites waiting for a task (site_swarm, mutual TLS on 127.0.0.1, model mlp)"
echo "| sites | threads | RSS (MiB) | threads | RSS (MiB) | peak RSS  | round (s) | train (s) |"
echo "|       | waiting | waiting   | after   | after     | (MiB)     | all sites | metrics   |"
echo "|-------|---------|-----------|---------|-----------|-----------|-----------|-----------|"
printf '%s\n' "${rows[@]}"
echo "round: from the (N+1)th site's start until every site heard DONE (evaluation of the initial"
echo "model, one training round, its evaluation); train: the training round's 'seconds' in metrics.jsonl."
