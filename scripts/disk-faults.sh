#!/usr/bin/env bash
# Disk faults on real processes: the coordinator's state folder, then a site's, on a small
# tmpfs that fills up during a real federation (2 sites, plaintext, the mlp model). Each time
# the process must stop with a clear "No space left on device" message naming its file; once
# the file system is enlarged (mount -o remount,size=...) and the process restarted, the
# federation finishes, and the audit log and both egress ledgers verify and reconcile.
#
# Needs root (mount -t tmpfs); without the right to mount it says so and exits 0 ("skipped").
# Run after a build:  scripts/disk-faults.sh [build-dir]   (about a minute)
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/federation.sh"
bin=$root/$build
out=${HANSA_DISK_FAULTS_DIR:-$(mktemp -d /tmp/hansa-disk-faults.XXXXXX)}
port=${HANSA_DISK_FAULTS_PORT:-$((20000 + RANDOM % 20000))}
rounds=${HANSA_DISK_FAULTS_ROUNDS:-12}

say() { echo "disk-faults: $*"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}

mounts=()
cleanup() {
  kill "${federation_pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

probe=$out/probe
mkdir -p "$probe"
if ! mount -t tmpfs -o size=64k tmpfs "$probe" 2>/dev/null; then
  say "skipped: this user cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)"
  trap - EXIT
  exit 0
fi
umount "$probe"

"$bin/tools/hansa" provision --out "$out/federation" --federation disk \
  --coordinator coordinator:DE --site berlin:DE --site paris:FR \
  --listen "127.0.0.1:$port" --shard-shared-data >"$out/provision.txt"
kit=$out/federation
cat >>"$kit/coordinator/coordinator.toml" <<TOML

[model]
name = "mlp"
seed = 3

[rounds]
total = $rounds
min_sites = 2
wait_for_sites_seconds = 120
site_idle_seconds = 20

[training]
epochs = 1
batch_size = 32
learning_rate = 0.05

[aggregation]
mode = "plaintext"
TOML
sed -i 's/^\[coordinator\]$/[coordinator]\nlinger_seconds = 5/' "$kit/coordinator/coordinator.toml"
for site in berlin paris; do
  toml=$kit/sites/$site/site.toml
  sed -i 's/^\[site\]$/[site]\nreconnect_seconds = 120/' "$toml"
  sed -i 's/^\[policy\]$/[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1/' "$toml"
  printf 'train_limit = 600\ntest_limit = 200\n[compute]\nthreads = 1\n' >>"$toml"
done

cstate=$kit/coordinator/state
sstate=$kit/sites/berlin/state
mkdir -p "$cstate" "$sstate"
# The coordinator's state: room for about two checkpoints of the mlp (about 0.4 MB each).
mount -t tmpfs -o size=1200k,mode=0700 tmpfs "$cstate"
mounts+=("$cstate")
mount -t tmpfs -o size=16m,mode=0700 tmpfs "$sstate"
mounts+=("$sstate")

logs=$out/logs
mkdir -p "$logs"
start_process() { # NAME ARGS...: starts one process, its log appended to, pid in pids[NAME]
  local name=$1
  shift
  "$@" >>"$logs/$name.log" 2>&1 &
  pids[$name]=$!
}
declare -A pids
coordinator_cmd=("$bin/coordinator/hansa-coordinator" --config "$kit/coordinator/coordinator.toml")
site_cmd() { echo "$bin/client/hansa-client" --once --config "$kit/sites/$1/site.toml"; }

# wait_exit NAME SECONDS: waits for a process to end; sets rc.
wait_exit() {
  local name=$1 limit=$2 i
  for ((i = 0; i < limit * 10; i++)); do
    if ! kill -0 "${pids[$name]}" 2>/dev/null; then
      rc=0
      wait "${pids[$name]}" || rc=$?
      return 0
    fi
    sleep 0.1
  done
  fail "$name still running after $limit s (log: $logs/$name.log)"
}

# 1. The coordinator's disk fills.
start_process coordinator "${coordinator_cmd[@]}"
# shellcheck disable=SC2046
start_process berlin $(site_cmd berlin)
# shellcheck disable=SC2046
start_process paris $(site_cmd paris)
federation_pids=("${pids[@]}")
wait_exit coordinator 300
[ "$rc" -ne 0 ] || fail "the coordinator finished although its disk was full (log: $logs/coordinator.log)"
grep -q "No space left on device\|database or disk is full" "$logs/coordinator.log" ||
  fail "the coordinator stopped (exit $rc) without saying its disk is full: $(tail -3 "$logs/coordinator.log")"
say "coordinator stopped on a full disk (exit $rc): $(grep -m1 'No space left\|disk is full' "$logs/coordinator.log")"
completed=$(wc -l <"$cstate/metrics.jsonl" 2>/dev/null || echo 0)
say "  rounds evaluated before: $completed; $(df -h --output=used,size "$cstate" | tail -1)"

mount -o remount,size=64m "$cstate"
start_process coordinator "${coordinator_cmd[@]}"
federation_pids=("${pids[@]}")

# 2. A site's disk fills: its tmpfs shrinks to what it uses now plus a little.
for ((i = 0; i < 600; i++)); do
  [ "$(wc -l <"$cstate/metrics.jsonl" 2>/dev/null || echo 0)" -gt "$((completed + 1))" ] && break
  kill -0 "${pids[coordinator]}" 2>/dev/null || fail "the restarted coordinator stopped: $(tail -3 "$logs/coordinator.log")"
  sleep 0.5
done
seen=$(wc -l <"$logs/berlin.log")
used_kb=$(df -k --output=used "$sstate" | tail -1 | tr -d ' ')
mount -o remount,size=$((used_kb + 8))k "$sstate"
wait_exit berlin 300
[ "$rc" -ne 0 ] || fail "site berlin finished although its disk was full (log: $logs/berlin.log)"
tail -n +"$((seen + 1))" "$logs/berlin.log" | grep -q "error .*$sstate/.*No space left on device" ||
  fail "site berlin stopped (exit $rc) without saying its disk is full: $(tail -3 "$logs/berlin.log")"
say "site berlin stopped on a full disk (exit $rc): $(tail -n +"$((seen + 1))" "$logs/berlin.log" | grep -m1 'error .*No space left')"

mount -o remount,size=16m "$sstate"
# shellcheck disable=SC2046
start_process berlin $(site_cmd berlin)
federation_pids=("${pids[@]}")

# 3. The federation finishes; its records verify and reconcile.
for name in coordinator berlin paris; do
  wait_exit "$name" 600
  [ "$rc" -eq 0 ] || fail "$name exited $rc after the disks had room again (log: $logs/$name.log)"
done
[ "$(wc -l <"$cstate/metrics.jsonl")" -eq "$((rounds + 1))" ] ||
  fail "metrics.jsonl has $(wc -l <"$cstate/metrics.jsonl") lines, expected $((rounds + 1))"
hansa=$bin/tools/hansa
"$hansa" audit verify --ca "$kit/ca/ca.pem" --require-closed "$cstate/audit.jsonl" >"$out/verify.txt"
for site in berlin paris; do
  "$hansa" audit verify --ca "$kit/ca/ca.pem" --role site "$kit/sites/$site/state/egress.jsonl" >>"$out/verify.txt"
  "$hansa" audit reconcile --ca "$kit/ca/ca.pem" "$cstate/audit.jsonl" \
    "$kit/sites/$site/state/egress.jsonl" >>"$out/verify.txt"
done
say "passed: $rounds rounds after a full coordinator disk and a full site disk; audit log and ledgers verify and reconcile (logs in $logs)"
