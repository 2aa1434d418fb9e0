#!/usr/bin/env bash
# The non-trainable baselines on the reported Multi-dSprites test splits (seeds 777 and 778):
#   scripts/multi_dsprites_baselines.sh VARIANT [ORACLE_CONFIG]
# writes results/runs/baseline_<name>_<variant>_<320|5000>.json. The oracle uses ORACLE_CONFIG's
# localization settings (default configs/multi_dsprites.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
variant=$1 oracle_config=${2:-configs/multi_dsprites.yaml}
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
    tag=$(basename "$oracle_config" .yaml)
    $LOCSEG evaluate --baseline oracle --config "$oracle_config" --data "$data" --split test \
        --json "results/runs/baseline_oracle-${tag}_${variant}_$n.json" > /dev/null
done
