#!/usr/bin/env bash
# make demo: provision a three-site federation (berlin/DE, paris/FR, milan/IT) and run it on
# 127.0.0.1 over mutual TLS: one hansa-coordinator and three hansa-client processes, each
# site training on its own disjoint third of Fashion-MNIST. Prints the per-round table,
# reconciles each site's egress ledger with the coordinator's audit log and writes the
# compliance report.
#
# HANSA_DEMO_ROUNDS (5), HANSA_DEMO_PORT (50051), HANSA_DEMO_DIR (demo-run) change the run;
# HANSA_DEMO_EXTRA names a TOML file appended to coordinator.toml, to try options such as
# [privacy] or [record_privacy] on the same federation.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/federation.sh
. "$root/scripts/federation.sh"
bin=$root/$build
out=${HANSA_DEMO_DIR:-$root/demo-run}
rounds=${HANSA_DEMO_ROUNDS:-5}
port=${HANSA_DEMO_PORT:-50051}

rm -rf "$out"
mkdir -p "$out"
"$bin/tools/hansa" provision --out "$out/federation" --federation demo \
  --coordinator coordinator:DE:Hansa-Demo-Coordinator \
  --site berlin:DE:Berlin-University-Hospital --site paris:FR:Paris-Research-Centre \
  --site milan:IT:Milan-Clinical-Institute --listen "127.0.0.1:$port" --shard-shared-data \
  >"$out/provision.txt"

kit=$out/federation
cat >>"$kit/coordinator/coordinator.toml" <<TOML

[model]
name = "simple_cnn"
seed = 1

[rounds]
total = $rounds
min_sites = 3
wait_for_sites_seconds = 120

[training]
epochs = 1
batch_size = 32
learning_rate = 0.02
momentum = 0.9
weight_decay = 1e-5
TOML
if [ -n "${HANSA_DEMO_EXTRA:-}" ]; then
  { echo; cat "$HANSA_DEMO_EXTRA"; } >>"$kit/coordinator/coordinator.toml"
fi
for site in berlin paris milan; do
  # Three sites share two cores here: one torch thread each.
  printf '\n[compute]\nthreads = 1\n' >>"$kit/sites/$site/site.toml"
done

echo "Hansa demo: federation 'demo' with sites berlin (DE), paris (FR), milan (IT) on 127.0.0.1:$port"
echo "            $rounds rounds of FedAvg on Fashion-MNIST over mutual TLS 1.3; logs in $out/logs"
start_federation "$bin" "$kit" "$out/logs" berlin paris milan
coordinator=${federation_pids[0]}

state=$kit/coordinator/state
shown=0
status=0
while kill -0 "$coordinator" 2>/dev/null; do
  sleep 2
  if [ -f "$state/metrics.jsonl" ]; then
    n=$(wc -l <"$state/metrics.jsonl")
    if [ "$n" -gt "$shown" ]; then
      echo "  ... round $((n - 1)) of $rounds evaluated"
      shown=$n
    fi
  fi
done
wait_federation || status=$?

echo
"$bin/tools/hansa" metrics "$state" || true
echo
if [ "$status" -ne 0 ]; then
  echo "A process failed (exit $status); see the logs in $out/logs." >&2
  exit "$status"
fi
# What a compliance reviewer checks, from files alone: the coordinator's audit log (signed by
# the kit's coordinator certificate, and closed: nothing cut off at the end), each site's egress
# ledger against it, then the report, which makes and lists the same checks.
"$bin/tools/hansa" audit verify --ca "$kit/ca/ca.pem" --certificate "$kit/coordinator/cert.pem" \
  --require-closed "$state/audit.jsonl"
egress=()
for site in berlin paris milan; do
  "$bin/tools/hansa" audit reconcile --ca "$kit/ca/ca.pem" "$state/audit.jsonl" \
    "$kit/sites/$site/state/egress.jsonl"
  egress+=(--egress "$kit/sites/$site/state/egress.jsonl")
done
"$bin/tools/hansa" report "$state" --ca "$kit/ca/ca.pem" \
  --certificate "$kit/coordinator/cert.pem" "${egress[@]}" --out "$out/report"
echo
cat <<TXT
Files:
  compliance report     $out/report/report.html   (and report.json)
  audit log             $state/audit.jsonl   (check: hansa audit verify --ca $kit/ca/ca.pem FILE;
                        a site's ledger: ... --role site FILE)
  egress ledgers        $kit/sites/<site>/state/egress.jsonl
  startup kits          $kit/{coordinator,sites/*}   (CA key: $kit/ca/ca-key.pem)
  metrics (per round)   $state/metrics.jsonl
  checkpoints           $state/checkpoints/round-NNNN.safetensors
  coordinator state     $state/state.db (SQLite)
  logs                  $out/logs/
Run a site by hand:     $bin/client/hansa-client --once --config $kit/sites/berlin/site.toml   (without --once it waits for the next study)
TXT
