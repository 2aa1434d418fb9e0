#!/usr/bin/env bash
# One reported run on Multi-dSprites: train CONFIG with SEED on data generated with a seed never
# used in tuning (777 for the 320-image test split, 778 for the 5,000-image one), then score it.
#   scripts/multi_dsprites_final.sh CONFIG VARIANT SEED [overrides...]
# Writes runs/final/<name>/ (run directory, eval.csv with FG-ARI against time) and
# results/runs/<name>.json (scores on both test splits, minutes, images/s). One CPU thread.
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1 variant=$2 seed=$3
shift 3
LOCSEG=.venv/bin/locseg
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824
data=data/final_$variant data5k=data/final5k_$variant
[ -d "$data" ] || $LOCSEG generate multi-dsprites --variant "$variant" --num-train 20000 --num-test 320 \
    --seed 777 --out "$data" --no-progress
[ -d "$data5k" ] || $LOCSEG generate multi-dsprites --variant "$variant" --num-train 32 --num-test 5000 \
    --seed 778 --out "$data5k" --no-progress
name=$(basename "$config" .yaml)_${variant}_s${seed}${NAME_SUFFIX:-}
run=runs/final/$name
rm -rf "$run"
mkdir -p runs/final results/runs
$LOCSEG train --config "$config" --data "$data" --out "$run" --no-progress train.seed="$seed" \
    train.num_threads=1 train.eval_every=100 train.eval_images=128 "$@" > "$run.log" 2>&1
$LOCSEG evaluate --checkpoint "$run/checkpoint.pt" --data "$data" --split test --json "$run/test320.json" >> "$run.log" 2>&1
$LOCSEG evaluate --checkpoint "$run/checkpoint.pt" --data "$data5k" --split test --json "$run/test5000.json" >> "$run.log" 2>&1
.venv/bin/python - "$run" "$name" "$config" "$variant" "$seed" "$*" <<'PY'
import csv, json, sys
run, name, config, variant, seed, overrides = sys.argv[1:]
rows = list(csv.DictReader(open(f"{run}/train.csv")))
curve = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(open(f"{run}/eval.csv"))]
last = rows[-1]
out = {"name": name, "config": config, "variant": variant, "seed": int(seed), "overrides": overrides,
       "steps": int(float(last["step"])), "minutes": float(last["elapsed_s"]) / 60,
       "img_per_s": sum(float(r["img_per_s"]) for r in rows) / len(rows),
       "test320": json.load(open(f"{run}/test320.json")), "test5000": json.load(open(f"{run}/test5000.json")),
       "curve": [{"step": c["step"], "minutes": c["elapsed_s"] / 60, "fg_ari": c["fg_ari"]} for c in curve]}
json.dump(out, open(f"results/runs/{name}.json", "w"), indent=1)
print(name, "FG-ARI", round(out["test320"]["fg_ari"], 3), round(out["test5000"]["fg_ari"], 3))
PY
