#!/usr/bin/env bash
# The non-trainable baselines on the reported Multi-dSprites test splits (seeds 777 and 778):
#   scripts/multi_dsprites_baselines.sh VARIANT [ORACLE_CONFIG ...]
# writes results/runs/baseline_<name>_<variant>_<320|5000>.json. One oracle per ORACLE_CONFIG, with
# its localization settings (default: configs/multi_dsprites.yaml); the other baselines run once.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=$1
shift
oracle_configs=("${@:-configs/multi_dsprites.yaml}")
LOCSEG=.venv/bin/locseg
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p results/runs
for n in 320 5000; do
    data=data/final_$variant
    [ "$n" = 5000 ] && data=data/final5k_$variant
    for b in kmeans-rgb kmeans-rgbxy connected-components; do
        $LOCSEG evaluate --baseline "$b" --data "$data" --split test \
            --json "results/runs/baseline_${b}_${variant}_$n.json" > /dev/null
    done
    for oracle_config in "${oracle_configs[@]}"; do
        tag=$(basename "$oracle_config" .yaml)
        $LOCSEG evaluate --baseline oracle --config "$oracle_config" --data "$data" --split test \
            --json "results/runs/baseline_oracle-${tag}_${variant}_$n.json" > /dev/null
    done
done
