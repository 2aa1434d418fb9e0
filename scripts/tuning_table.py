"""Markdown rows for tuning runs made with scripts/experiment.sh (validation data, never a test split).

    python scripts/tuning_table.py runs/e1_rel_light runs/e2_... > rows.md

One row per run: its overrides, FG-ARI at each evaluation (128 validation images) and the
diagnostics of the last evaluation (locseg.diagnostics).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

DIAG = ("fg_as_bg", "q1_fg", "q1_bg", "window_cover_fg", "windows_on_bg", "colour_error", "slot_collapse")


def overrides(run: Path) -> str:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    seg = cfg["model"]["segmenter"]
    keys = {"bg_quality": seg.get("bg_quality"), "background": seg.get("background"),
            "f": seg["localization"]["butterworth_f"], "box": seg["localization"]["box_size"],
            "cov": seg["localization"]["covariance"], "scope_w": seg["localization"].get("scope_weights"),
            "σ1": seg["localization"]["sigma1"], "σ_obj": seg.get("sigma1_objects") or seg["localization"]["sigma1"],
            "connected": seg["localization"].get("connected", False),
            "blob_split": seg["localization"].get("blob_split", 0)}
    return ", ".join(f"{k}={v}" for k, v in keys.items())


def main() -> None:
    print("| run | settings | FG-ARI by step | last step: " + ", ".join(DIAG) + " |")
    print("|---|---|---|---|")
    for name in sys.argv[1:]:
        run = Path(name)
        rows = list(csv.DictReader((run / "eval.csv").open()))
        curve = " ".join(f"{int(float(r['step']))}:{float(r['fg_ari']):.2f}" for r in rows)
        last = rows[-1]
        diag = ", ".join(f"{float(last['diag_' + d]):.2f}" if last.get("diag_" + d) not in (None, "") else "–"
                         for d in DIAG)
        print(f"| {run.name} | {overrides(run)} | {curve} | {diag} |")


if __name__ == "__main__":
    main()
