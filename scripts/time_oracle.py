"""Time the module oracle of a config on a test split, and score it (results/bench.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/time_oracle.py DATA [--config C] [--num-images 320] [OVERRIDES ...]

Runs ``Oracle(K, localization)`` from ``locseg.models.baselines`` (what ``locseg evaluate --baseline
oracle`` scores) on the first images of DATA's test split, once with the config as it is and once per
override string given (e.g. "model.segmenter.localization.concave_split=0"), and prints FG-ARI to
every digit with the wall time. Run it on two commits to time a change that must not alter scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from locseg.config import load as load_config  # noqa: E402
from locseg.data import load_split  # noqa: E402
from locseg.metrics.rand_index import ari  # noqa: E402
from locseg.models.baselines import Oracle  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/multi_dsprites_binarized.yaml"))
    p.add_argument("--num-images", type=int, default=320)
    p.add_argument("overrides", nargs="*", help="one run per string of space-separated overrides")
    args = p.parse_args()
    torch.set_num_threads(1)
    split = load_split(args.data, "test")
    n = args.num_images
    x = torch.from_numpy(np.array(split["images"][:n])).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(np.array(split["labels"][:n])).long()
    for overrides in ["", *args.overrides]:
        cfg = load_config(args.config, overrides=overrides.split()).model.segmenter
        start = time.perf_counter()
        masks = Oracle(cfg.num_slots, cfg.localization)(x).masks[:, :, 0]  # (B, K, H, W)
        score = float(ari(labels, masks.argmax(1), ignore_index=0).mean())
        print(f"{overrides or '(config)'}: FG-ARI {score!r}, {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
