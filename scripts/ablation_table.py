"""The ablation table of configs/multi_dsprites_plus.yaml from scripts/ablation.sh's runs (validation data).

    python scripts/ablation_table.py [runs/ablation]

One row per left-out option: FG-ARI on the 320 validation images at the end of the 500-step schedule,
mean ± std over the training seeds, each seed's value, and the change from the full config.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {
    "full": "plus config as shipped",
    "no_flat_background": "background step shares the object network (`background: shared`)",
    "no_scope_weights": "GMM weights without the scope (`scope_weights: false`)",
    "no_refine": "no colour-gated second split (`refine: 0`)",
    "no_sigma1_objects": "object steps use σ₁ = 0.3 like the paper (`sigma1_objects: 0`)",
    "no_diag_covariance": "full GMM covariance (`covariance: full`)",
}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation")
    scores: dict[str, dict[int, float]] = defaultdict(dict)
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        option, seed = run.name.rsplit("_s", 1)
        rows = list(csv.DictReader((run / "eval.csv").open())) if (run / "eval.csv").exists() else []
        if rows and int(float(rows[-1]["step"])) == 500:
            scores[option][int(seed)] = float(rows[-1]["fg_ari"])
    full = statistics.mean(scores["full"].values()) if scores.get("full") else float("nan")
    print("| left out | seeds | FG-ARI (mean ± std) | per seed | change |")
    print("|---|---|---|---|---|")
    for option in LABELS:
        values = scores.get(option)
        if not values:
            continue
        mean = statistics.mean(values.values())
        std = statistics.stdev(values.values()) if len(values) > 1 else 0.0
        per_seed = ", ".join(f"{values[s]:.3f}" for s in sorted(values))
        change = "–" if option == "full" else f"{mean - full:+.3f}"
        print(f"| {LABELS[option]} | {len(values)} | {mean:.3f} ± {std:.3f} | {per_seed} | {change} |")


if __name__ == "__main__":
    main()
