#!/usr/bin/env bash
# One tuning run on a validation split, one thread: scripts/experiment.sh NAME MINUTES CONFIG DATA [overrides...]
# MINUTES > 0 caps the run by wall clock (constant learning rate after warm-up); 0 trains the
# config's own train.max_steps with its schedule.
# Writes runs/NAME/ (eval.csv with FG-ARI and the diagnostics every train.eval_every steps) and runs/NAME.log.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 minutes=$2 config=$3 data=$4
shift 4
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824
rm -rf "runs/$name"
length="train.max_minutes=$minutes train.max_steps=100000"
[ "$minutes" = 0 ] && length=""
exec .venv/bin/locseg train --config "$config" --data "$data" --out "runs/$name" --no-progress \
    $length train.eval_every=100 train.eval_images=128 train.num_threads=1 "$@" > "runs/$name.log" 2>&1
