#!/usr/bin/env bash
# Side-by-side comparison of the paper's model and MONet (issue: MONet baseline).
# Same generated data, same seed, same training wall-clock budget; both run at the same time with
# one CPU thread each, so they share the machine equally. Writes results/comparison.md and figure.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-40}
SEED=${SEED:-0}
OUT=${OUT:-runs/compare}
LOCSEG=.venv/bin/locseg
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
mkdir -p "$OUT" results
[ -d "$OUT/data" ] || $LOCSEG generate multi-dsprites --variant colored_on_grayscale --num-train 20000 \
    --num-test 320 --seed "$SEED" --out "$OUT/data" --no-progress
COMMON="train.max_minutes=$MINUTES train.max_steps=1000000 train.schedule=constant train.num_threads=1
        train.seed=$SEED train.eval_images=320 train.checkpoint_every=100"
$LOCSEG train --config configs/multi_dsprites.yaml --data "$OUT/data" --out "$OUT/ours" --no-progress \
    $COMMON train.eval_every=150 ${OURS_OVERRIDES:-} > "$OUT/ours.log" 2>&1 &
$LOCSEG train --config configs/monet_multi_dsprites.yaml --data "$OUT/data" --out "$OUT/monet" --no-progress \
    $COMMON train.eval_every=60 > "$OUT/monet.log" 2>&1 &
wait
for m in ours monet; do
    $LOCSEG evaluate --checkpoint "$OUT/$m/checkpoint.pt" --data "$OUT/data" --split test --json "$OUT/$m.json"
done
$LOCSEG bench models --json > "$OUT/bench_models.json"
.venv/bin/python scripts/comparison_report.py "$OUT" --minutes "$MINUTES" --seed "$SEED"
