#!/usr/bin/env bash
# Proves the Prometheus metrics with the real Prometheus server from Debian: provisions a
# three-site federation (berlin/DE, paris/FR, milan/IT) on 127.0.0.1 with [monitoring] on
# loopback at the coordinator and every site, runs Prometheus scraping all four every second,
# and asks its HTTP API until it shows three sites connected and a round counter that rose.
# Two sites start first (min_sites = 3 holds the first round back), so Prometheus sees the
# counter at 0 before the third joins. Prints PASS or FAIL with the figures; exit 0 on PASS.
#
# scripts/prometheus-check.sh [BUILD_DIR]; installs Debian's prometheus package if missing.
# HANSA_PROM_DIR ($TMPDIR/hansa-prometheus-check) keeps the run; HANSA_PROM_PORT (50071) is the
# coordinator's gRPC port, the next four are the metrics ports and Prometheus listens on
# HANSA_PROM_PORT + 5.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/federation.sh
. "$root/scripts/federation.sh"
bin=$root/$build
out=${HANSA_PROM_DIR:-${TMPDIR:-/tmp}/hansa-prometheus-check}
port=${HANSA_PROM_PORT:-50071}
coord_metrics=$((port + 1))
prom_port=$((port + 5))

"$root/scripts/install-deps.sh" prometheus

rm -rf "$out"
mkdir -p "$out/logs"
"$bin/tools/hansa" provision --out "$out/federation" --federation promcheck \
  --coordinator coordinator:DE:Hansa-Coordinator \
  --site berlin:DE:Berlin-Hospital --site paris:FR:Paris-Centre --site milan:IT:Milan-Institute \
  --listen "127.0.0.1:$port" --shard-shared-data >"$out/provision.txt"
kit=$out/federation
cat >>"$kit/coordinator/coordinator.toml" <<TOML

[model]
name = "mlp"
seed = 1

[rounds]
total = 5
min_sites = 3
wait_for_sites_seconds = 300

[aggregation]
mode = "plaintext"

[monitoring]
listen = "127.0.0.1:$coord_metrics"
TOML
sed -i 's/^\[coordinator\]$/[coordinator]\nlinger_seconds = 30/' "$kit/coordinator/coordinator.toml"
i=2
targets=""
for site in berlin paris milan; do
  sed -i 's/^\[policy\]$/[policy]\nrequire_secure_aggregation = false/' "$kit/sites/$site/site.toml"
  printf 'train_limit = 3000\ntest_limit = 500\n\n[compute]\nthreads = 1\n\n[monitoring]\nlisten = "127.0.0.1:%d"\n' \
    $((port + i)) >>"$kit/sites/$site/site.toml"
  targets="$targets'127.0.0.1:$((port + i))', "
  i=$((i + 1))
done

cat >"$out/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hansa-coordinator
    static_configs:
      - targets: ['127.0.0.1:$coord_metrics']
  - job_name: hansa-sites
    static_configs:
      - targets: [${targets%, }]
YAML
prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$out/logs/prometheus.log" 2>&1 &
prom_pid=$!

# The value of an instant PromQL query that gives one series ("" when it gives none).
query() {
  curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" \
    2>/dev/null | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}
# Waits up to $1 seconds for `query $2` to print $3 or, with $3 = ">x", a number above x.
wait_query() {
  local deadline=$((SECONDS + $1)) v
  while [ $SECONDS -lt $deadline ]; do
    v=$(query "$2")
    case "$3" in
      '>'*) [ -n "$v" ] && awk -v a="$v" -v b="${3#>}" 'BEGIN { exit !(a > b) }' && return 0 ;;
      *) [ "$v" = "$3" ] && return 0 ;;
    esac
    sleep 1
  done
  return 1
}

# Two sites, then the third once Prometheus has seen the counter before any round.
federation_pids=()
trap 'kill "${federation_pids[@]}" "$prom_pid" 2>/dev/null || true' EXIT INT TERM
"$bin/coordinator/hansa-coordinator" --config "$kit/coordinator/coordinator.toml" \
  >"$out/logs/coordinator.log" 2>&1 &
federation_pids+=("$!")
for site in berlin paris; do
  "$bin/client/hansa-client" --once --config "$kit/sites/$site/site.toml" >"$out/logs/$site.log" 2>&1 &
  federation_pids+=("$!")
done

fail() {
  echo "FAIL: $1"
  echo "  sites connected: $(query 'max(hansa_sites_connected)'), rounds completed: $(query 'max(hansa_rounds_completed_total)'), targets up: $(query 'sum(up)') of 4"
  echo "  logs in $out/logs"
  exit 1
}
wait_query 120 'max(hansa_sites_connected)' 2 || fail "Prometheus never saw two sites connected"
rounds_before=$(query 'max(hansa_rounds_completed_total)')
[ "$rounds_before" = 0 ] || fail "a round completed with two of three sites (counter $rounds_before)"
"$bin/client/hansa-client" --once --config "$kit/sites/milan/site.toml" >"$out/logs/milan.log" 2>&1 &
federation_pids+=("$!")
wait_query 300 'max(hansa_sites_connected)' 3 || fail "Prometheus never saw three sites connected"
wait_query 300 'max(hansa_rounds_completed_total)' ">$rounds_before" ||
  fail "the round counter did not rise above $rounds_before"
sleep 2
connected=$(query 'max(hansa_sites_connected)')
rounds_after=$(query 'max(hansa_rounds_completed_total)')
rose=$(query 'max(increase(hansa_rounds_completed_total[5m]))')
# Over the whole run, not at this instant: a site started with --once may already have exited
# after the last round, and its series then read as stale.
up=$(query 'count(max_over_time(up[10m]) == 1)')
accepted=$(query 'sum(max_over_time(hansa_site_plans_accepted_total[10m]))')
sent=$(query 'sum(max_over_time(hansa_site_sent_bytes_total[10m]))')
samples=$(query 'count(count by (__name__) (last_over_time({__name__=~"hansa_.*"}[10m])))')
wait_federation || fail "a process of the federation failed"
kill "$prom_pid" 2>/dev/null || true
wait "$prom_pid" 2>/dev/null || true
echo "PASS: Prometheus $(prometheus --version 2>&1 | head -1 | cut -d' ' -f3) scraped the coordinator and three sites every 1 s"
echo "  sites connected: $connected; rounds completed: $rounds_before -> $rounds_after (increase over 5m: $rose)"
echo "  targets up while it ran: $up of 4; hansa_* metric names: $samples; plans accepted by the sites: $accepted; bytes the sites sent: $sent"
