#!/usr/bin/env bash
# Leave-one-out ablation of configs/multi_dsprites_plus.yaml on validation data (seed-1 data, never a
# test split), 3 training seeds each, a 500-step cosine schedule, two one-thread runs side by side:
#   scripts/ablation.sh [DATA]            (default data/tune_cg)
# Writes runs/ablation/<option>_s<seed>/ and their logs; scripts/ablation_table.py summarises them.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-data/tune_cg}
config=configs/multi_dsprites_plus.yaml
S=model.segmenter L=model.segmenter.localization
declare -A options=(
    [full]=""
    [no_flat_background]="$S.background=shared"
    [no_scope_weights]="$L.scope_weights=false"
    [no_refine]="$L.refine=0"
    [no_sigma1_objects]="$S.sigma1_objects=0"
    [no_diag_covariance]="$L.covariance=full"
)
jobs=()
for seed in 0 1 2; do
    for option in full no_flat_background no_scope_weights no_refine no_sigma1_objects no_diag_covariance; do
        jobs+=("$option $seed")
    done
done
run_one() {
    local option=$1 seed=$2
    mkdir -p runs/ablation
    scripts/experiment.sh "ablation/${option}_s$seed" 0 "$config" "$data" train.max_steps=500 train.warmup_steps=50 \
        train.eval_every=250 train.eval_images=320 train.seed="$seed" ${options[$option]}
}
worker() {  # every second job, starting at $1
    for ((i = $1; i < ${#jobs[@]}; i += 2)); do
        # shellcheck disable=SC2086
        run_one ${jobs[$i]} || echo "run ${jobs[$i]} failed" >&2
    done
}
worker 0 & worker 1 & wait
