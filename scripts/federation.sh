# shellcheck shell=bash
# Sourced by scripts/demo.sh, scripts/run-example.sh and examples/images/run.sh: runs a
# provisioned federation's processes on this machine.
#
# start_federation BIN KIT LOGS SITE...: starts BIN/coordinator/hansa-coordinator on
#   KIT/coordinator/coordinator.toml and one BIN/client/hansa-client per SITE on
#   KIT/sites/SITE/site.toml, in the background, each logging to LOGS/<name>.log. Sets
#   federation_pids (the coordinator's first) and kills them all if the script exits early.
# wait_federation: waits for every process; returns the first failure's exit status, or 0.
# finish_federation BIN KIT LOGS: wait_federation, then prints the per-round metrics; exits
#   with the failure's status, naming the logs, when a process failed.

start_federation() {
  local bin=$1 kit=$2 logs=$3 site
  shift 3
  mkdir -p "$logs"
  federation_pids=()
  trap 'kill "${federation_pids[@]}" 2>/dev/null || true' EXIT INT TERM
  "$bin/coordinator/hansa-coordinator" --config "$kit/coordinator/coordinator.toml" \
    >"$logs/coordinator.log" 2>&1 &
  federation_pids+=("$!")
  for site in "$@"; do
    "$bin/client/hansa-client" --once --config "$kit/sites/$site/site.toml" >"$logs/$site.log" 2>&1 &
    federation_pids+=("$!")
  done
}

wait_federation() {
  local pid rc status=0
  for pid in "${federation_pids[@]}"; do
    rc=0
    wait "$pid" || rc=$?
    [ "$status" -ne 0 ] || status=$rc
  done
  trap - EXIT INT TERM
  return "$status"
}

finish_federation() {
  local bin=$1 kit=$2 logs=$3 status=0
  wait_federation || status=$?
  "$bin/tools/hansa" metrics "$kit/coordinator/state" || true
  if [ "$status" -ne 0 ]; then
    echo "A process failed (exit $status); see the logs in $logs." >&2
    exit "$status"
  fi
}
