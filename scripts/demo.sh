#!/usr/bin/env bash
# `make demo`: generate Multi-dSprites, train the paper's model (configs/multi_dsprites.yaml, 1,000
# steps, about 6 minutes on 2 CPU cores), evaluate it on the 320 test images beside the trivial
# baselines, and draw the results, all under demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCSEG=.venv/bin/locseg
OUT=demo
CONFIG=${DEMO_CONFIG:-configs/multi_dsprites.yaml}
MINUTES=${DEMO_MINUTES:-10}  # safety cap on training wall clock; the config's 1,000 steps usually finish first
rm -rf "$OUT/data" "$OUT/run"
mkdir -p "$OUT"

echo "== 1/6 generate Multi-dSprites colored_on_grayscale (10000 train, 320 test, seed 0)"
$LOCSEG generate multi-dsprites --variant colored_on_grayscale --num-train 10000 --num-test 320 \
    --seed 0 --out "$OUT/data" --overwrite
$LOCSEG show "$OUT/data" --split test --out "$OUT/dataset.png"

echo "== 2/6 train $CONFIG (at most ${MINUTES} minutes)"
$LOCSEG train --config "$CONFIG" --data "$OUT/data" --out "$OUT/run" \
    train.max_minutes="$MINUTES" train.eval_every=250 train.eval_images=64

echo "== 3/6 evaluate on the 320 test images"
$LOCSEG evaluate --checkpoint "$OUT/run/checkpoint.pt" --data "$OUT/data" --split test --json "$OUT/metrics.json"
cp "$OUT/run/checkpoint.pt" "$OUT/model.pt"

echo "== 4/6 the trivial baselines on the same 320 images"
for b in kmeans-rgb kmeans-rgbxy connected-components; do
    $LOCSEG evaluate --baseline "$b" --data "$OUT/data" --split test --json "$OUT/baseline_$b.json" > /dev/null
done

echo "== 5/6 segment 8 test images as a user would (their own .npy), with overlays and centres"
.venv/bin/python -c "from locseg.data import load_split; import numpy as np; \
np.save('$OUT/test8.npy', np.asarray(load_split('$OUT/data', 'test')['images'][:8]))"
$LOCSEG segment --checkpoint "$OUT/model.pt" --input "$OUT/test8.npy" --out "$OUT/segments.npz" --png "$OUT/overlays"

echo "== 6/6 figures and summary"
cp "$(ls "$OUT"/run/figures/*.png | tail -n 1)" "$OUT/slots.png"
.venv/bin/python - "$OUT" "$CONFIG" <<'PY'
import json, sys
out, config = sys.argv[1:]
m = json.load(open(f"{out}/metrics.json"))
print(f"{config}: FG-ARI {m['fg_ari']:.3f}  ARI {m['ari']:.3f}  mSC {m['msc']:.3f}  "
      f"location error {m['location_error']:.3f}  (320 test images)")
for b in ("kmeans-rgb", "kmeans-rgbxy", "connected-components"):
    s = json.load(open(f"{out}/baseline_{b}.json"))
    print(f"baseline {b}: FG-ARI {s['fg_ari']:.3f}  ARI {s['ari']:.3f}")
PY
echo "wrote $OUT/metrics.json, $OUT/model.pt, $OUT/dataset.png, $OUT/slots.png, $OUT/overlays/, $OUT/run/"
