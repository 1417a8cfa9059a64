#!/bin/bash
# Submits a `hansa simulate` sweep to Slurm: a job array with one task per cell
# (slurm-array.sh) and a summarize job that starts when every task has ended, done or not,
# writes RUN_DIR/summary.md, summary.csv and the plots of the finished cells, and lists the
# missing ones in its output (and fails, exit 3, when some are missing: resubmit those with
# the --cell list it prints, or run this script again, which skips the finished cells).
#
#   examples/niid-bench/jobs/slurm-submit.sh examples/niid-bench/fmnist.toml /shared/runs/fmnist
#
# Extra sbatch options for the cells go in SBATCH_CELL_OPTIONS, e.g. "--partition=gpu
# --gres=gpu:1". HANSA names the binary (default: hansa on PATH).
set -euo pipefail

experiment=${1:?usage: slurm-submit.sh EXPERIMENT.toml RUN_DIR}
run_dir=${2:?usage: slurm-submit.sh EXPERIMENT.toml RUN_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hansa=${HANSA:-hansa}
export HANSA="$hansa"

cells=$("$hansa" simulate "$experiment" --list-cells 2>/dev/null | wc -l)
if [ "$cells" -lt 1 ]; then
  "$hansa" simulate "$experiment" --list-cells  # shows why
  exit 2
fi
# shellcheck disable=SC2086  # SBATCH_CELL_OPTIONS is a list of options
array=$(sbatch --parsable --array="0-$((cells - 1))" ${SBATCH_CELL_OPTIONS:-} \
  "$here/slurm-array.sh" "$experiment" "$run_dir")
summary=$(sbatch --parsable --dependency="afterany:${array%%;*}" --job-name=hansa-summarize \
  --cpus-per-task=1 --mem=1G --time=00:10:00 --output=hansa-summarize-%j.out \
  --wrap="exec \"$hansa\" simulate summarize \"$run_dir\"")
echo "cells 0-$((cells - 1)): job array $array; summary: job $summary (hansa simulate summarize $run_dir)"
