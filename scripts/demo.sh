#!/usr/bin/env bash
# `make demo`: generate Multi-dSprites, train the paper's model for a few minutes on the CPU,
# evaluate it on the 320 test images and draw the results, all under demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCSEG=.venv/bin/locseg
OUT=demo
MINUTES=${DEMO_MINUTES:-8}
rm -rf "$OUT/data" "$OUT/run"
mkdir -p "$OUT"

echo "== 1/5 generate Multi-dSprites colored_on_grayscale (10000 train, 320 test, seed 0)"
$LOCSEG generate multi-dsprites --variant colored_on_grayscale --num-train 10000 --num-test 320 \
    --seed 0 --out "$OUT/data" --overwrite
$LOCSEG show "$OUT/data" --split test --out "$OUT/dataset.png"

echo "== 2/5 train the paper's model for ${MINUTES} minutes (configs/multi_dsprites.yaml)"
$LOCSEG train --config configs/multi_dsprites.yaml --data "$OUT/data" --out "$OUT/run" \
    train.max_minutes="$MINUTES" train.max_steps=100000 train.eval_every=0 train.eval_images=64

echo "== 3/5 evaluate on the 320 test images"
$LOCSEG evaluate --checkpoint "$OUT/run/checkpoint.pt" --data "$OUT/data" --split test --json "$OUT/metrics.json"
cp "$OUT/run/checkpoint.pt" "$OUT/model.pt"

echo "== 4/5 segment 8 test images as a user would (their own .npy), with overlays"
.venv/bin/python -c "from locseg.data import load_split; import numpy as np; \
np.save('$OUT/test8.npy', np.asarray(load_split('$OUT/data', 'test')['images'][:8]))"
$LOCSEG segment --checkpoint "$OUT/model.pt" --input "$OUT/test8.npy" --out "$OUT/segments.npz" --png "$OUT/overlays"

echo "== 5/5 figures"
cp "$(ls "$OUT"/run/figures/*.png | tail -n 1)" "$OUT/slots.png"
.venv/bin/python -c "import json; m = json.load(open('$OUT/metrics.json')); \
print(f\"FG-ARI {m['fg_ari']:.3f}  ARI {m['ari']:.3f}  mSC {m['msc']:.3f}  location error {m['location_error']:.3f}\")"
echo "wrote $OUT/metrics.json, $OUT/model.pt, $OUT/dataset.png, $OUT/slots.png, $OUT/overlays/, $OUT/run/"
