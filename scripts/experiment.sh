#!/usr/bin/env bash
# One tuning run on a validation split, one thread: scripts/experiment.sh NAME MINUTES CONFIG DATA [overrides...]
# Writes runs/NAME/ (eval.csv with FG-ARI and the diagnostics every train.eval_every steps) and runs/NAME.log.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 minutes=$2 config=$3 data=$4
shift 4
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824
rm -rf "runs/$name"
exec .venv/bin/locseg train --config "$config" --data "$data" --out "runs/$name" --no-progress \
    train.max_minutes="$minutes" train.max_steps=100000 train.eval_every=100 train.eval_images=128 \
    train.num_threads=1 "$@" > "runs/$name.log" 2>&1
