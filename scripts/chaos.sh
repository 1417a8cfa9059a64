#!/usr/bin/env bash
# Chaos on real processes (make check-chaos): SIGKILLs a secure federation's processes and
# checks that nothing is lost or counted twice.
#
#   scripts/chaos.sh [SEED] [BUILD_DIR]       (SEED 16, BUILD_DIR build; built beforehand,
#                                              as make check-chaos does)
#
# 1. A coordinator of 3 sites SIGKILLed HANSA_CHAOS_KILLS (20) times at moments SEED picks:
#    each kill waits for a stage (start, plan, advertise, share, train, upload, unmask,
#    release, evaluate; every stage at least once) seen in the audit log, a site's egress
#    ledger or the coordinator's log, then a seeded 0-150 ms more; the coordinator restarts
#    at once over the same state dir.
# 2. A site of 4 SIGKILLed at each stage of its round: before its upload, half-way through it
#    (over a slow relay), after it, during unmasking, during evaluation; then enough sites to
#    leave an attempt too few: 2 of 4 before their uploads (min_sites 3), 3 of 4 during the
#    unmasking (each secret needs t = 2 shares). That attempt must stop with no sum unmasked,
#    nothing released, booked in the privacy account or counted, the victims recorded dropped
#    and the reason logged, the survivors still running; restarted, the victims join the
#    retry, which releases the round once.
# After each: every round released, booked and evaluated exactly once, no update counted
# twice, the survivors exit 0, `hansa audit verify` passes and every egress ledger reconciles
# with the audit log with 0 differences. Prints a table of the kills; exits non-zero on any
# violation. Logs stay in a folder of this run's own under $TMPDIR (or /tmp), named at the end:
# the tests' folders are named after the tests, so a make test running beside this would
# otherwise take them over. The same code, with 3
# kills and 3 site stages (mid_upload, during_unmask, too_few_at_upload), runs in make test
# (tests/integration/chaos_test.cc).
set -euo pipefail

seed=${1:-16}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$root/$build ;; esac
case $seed in '' | *[!0-9]*)
  echo "usage: scripts/chaos.sh [SEED] [BUILD_DIR]   (SEED: a non-negative integer)" >&2
  exit 2
  ;;
esac

if [ ! -x "$build/tests/integration/chaos_test" ]; then
  echo "chaos: $build/tests/integration/chaos_test is not built; run make build first" >&2
  exit 2
fi
report=$(mktemp)
trap 'rm -f "$report"' EXIT
logs=$(mktemp -d "${TMPDIR:-/tmp}/hansa-chaos.XXXXXX")
started=$(date +%s)
status=0
TEST_TMPDIR=$logs HANSA_BUILD_DIR=$build HANSA_SOURCE_DIR=$root HANSA_CHAOS_SEED=$seed \
  HANSA_CHAOS_KILLS=${HANSA_CHAOS_KILLS:-20} HANSA_CHAOS_SITE_STAGES=${HANSA_CHAOS_SITE_STAGES:-all} \
  HANSA_CHAOS_REPORT=$report \
  "$build/tests/integration/chaos_test" --gtest_filter='ChaosTest.*' >"$build/chaos.log" 2>&1 ||
  status=$?
cat "$report"
echo
echo "chaos: seed $seed, $(($(date +%s) - started)) s; full output in $build/chaos.log, processes' logs in $logs"
if [ "$status" -ne 0 ]; then
  grep -E '^\[  FAILED  \]|Failure' "$build/chaos.log" >&2 || true
  echo "chaos: FAILED (exit $status)" >&2
fi
exit "$status"
