#!/bin/bash
# One cell of a `hansa simulate` sweep per Slurm array task: task K runs cell K (the K-th line of
# `hansa simulate EXPERIMENT.toml --list-cells`) into RUN_DIR, a folder every node sees (a shared
# file system). Submit the whole sweep, and a summary once every cell has ended, with
# slurm-submit.sh; or by hand, with N the number of cells:
#
#   sbatch --array=0-$((N-1)) slurm-array.sh EXPERIMENT.toml RUN_DIR
#   hansa simulate summarize RUN_DIR        # when the array has ended
#
# A cell that finished is never run twice, so a requeued, resubmitted or repeated task whose
# cell is done exits 0 at once; a task killed midway leaves its cell unfinished, and the next
# run of that cell starts it again from scratch. Tasks of other experiments cannot write into
# RUN_DIR: its experiment.toml must be theirs (exit 2 otherwise).
#
# Exit codes (hansa simulate): 0 done, 1 the run failed, 2 bad input (nothing ran), 3 the cell
# is running in another task (it holds the cell's lock in RUN_DIR/.locks).
#
# Threads: torch uses every core of the node unless the experiment's [experiment] threads says
# otherwise; set threads = the --cpus-per-task below in the experiment file (all tasks must use
# the same file). With GPUs: device = "auto" in the experiment and uncomment --gres.
#SBATCH --job-name=hansa-cell
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=hansa-cell-%A_%a.out
##SBATCH --gres=gpu:1
set -euo pipefail

experiment=${1:?usage: sbatch --array=0-N-1 slurm-array.sh EXPERIMENT.toml RUN_DIR}
run_dir=${2:?usage: sbatch --array=0-N-1 slurm-array.sh EXPERIMENT.toml RUN_DIR}
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=0-N-1 (one task per cell)}"
# The installed binary (Debian package hansa-tools), or set HANSA to a build's tools/hansa.
hansa=${HANSA:-hansa}

exec "$hansa" simulate "$experiment" --out "$run_dir" --cell "$SLURM_ARRAY_TASK_ID"
