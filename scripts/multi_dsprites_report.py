"""Write results/multi_dsprites.md and its figures from results/runs/*.json.

The JSON files come from scripts/multi_dsprites_final.sh (trained runs) and
scripts/multi_dsprites_baselines.sh (non-trainable baselines), both on test splits generated with
seeds 777 (320 images) and 778 (5,000 images) that no tuning run ever saw.

    python scripts/multi_dsprites_report.py [--slots runs/final/<name>]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANTS = ("colored_on_grayscale", "colored_on_colored", "binarized")


def num(value: float | None) -> float:
    """A JSON score as a float (None, written for NaN, back to NaN)."""
    return float("nan") if value is None else float(value)


def fmt(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]  # None: NaN in the JSON
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def slot_figure(run: Path, variant: str, out: Path) -> None:
    """Three test images of ``data/final_<variant>`` through the run's checkpoint (seeded eval mode)."""
    import torch

    from locseg import viz
    from locseg.checkpoint import load_model
    from locseg.data import load_split
    from locseg.inference import seeded_eval, to_tensor

    model, cfg, _ = load_model(run / "checkpoint.pt")
    x = to_tensor(load_split(f"data/final_{variant}", "test")["images"][:3], "cpu", cfg.data.image_size)
    with torch.no_grad(), seeded_eval(model, 0):
        viz.slot_figure(x, model(x), out, max_images=3)
    from PIL import Image

    Image.open(out).convert("RGB").quantize(64).save(out, optimize=True)  # keep the repository small


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--slots", type=Path, nargs="*", default=[], help="run directories to draw slot figures of")
    args = p.parse_args()
    runs = [json.loads(f.read_text()) for f in sorted((args.results / "runs").glob("*.json"))
            if not f.name.startswith("baseline_")]
    baselines = {}
    for f in sorted((args.results / "runs").glob("baseline_*.json")):
        name, variant, n = None, None, f.stem.rsplit("_", 1)[1]
        stem = f.stem[len("baseline_"):-len(n) - 1]
        for v in VARIANTS:
            if stem.endswith("_" + v):
                name, variant = stem[: -len(v) - 1], v
        baselines[(name, variant, n)] = json.loads(f.read_text())

    lines = ["# Multi-dSprites: the paper's model, locseg's plus configs and the baselines", "",
             "Every number below was measured on this project's 2-core CPU machine (no GPU), each training run on "
             "one thread with one to five other runs beside it (`OMP_NUM_THREADS=1`), batch 32, 64×64. Runs "
             "train on 20,000 images generated with seed 777 and are scored on that dataset's 320-image test "
             "split and on a 5,000-image test split generated with seed 778. No tuning run saw either seed: "
             "tuning used `--seed 1` data and its test split as validation (`results/tuning_v2.md`).", ""]
    groups = defaultdict(list)
    for r in runs:  # one row per config and set of overrides
        label = Path(r["config"]).stem + (f"` + `{r['overrides']}" if r["overrides"] else "")
        groups[(label, r["variant"])].append(r)

    lines += ["## Summary (mean ± std over training seeds)", "",
              "| method | variant | seeds | FG-ARI (320) | FG-ARI (5,000) | mSC (320) | location error (320) | "
              "minutes | images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for (config, variant), rs in sorted(groups.items(), key=lambda kv: (VARIANTS.index(kv[0][1]), kv[0][0])):
        lines.append(f"| `{config}` | {variant} | {len(rs)} | {fmt([r['test320']['fg_ari'] for r in rs])} | "
                     f"{fmt([r['test5000']['fg_ari'] for r in rs])} | {fmt([r['test320']['msc'] for r in rs])} | "
                     f"{fmt([r['test320'].get('location_error') for r in rs])} | "
                     f"{fmt([r['minutes'] for r in rs], 1)} | {fmt([r['img_per_s'] for r in rs], 1)} |")
    for (name, variant, n), b in sorted(baselines.items()):
        if n != "320":
            continue
        b5 = baselines.get((name, variant, "5000"), {})
        lines.append(f"| baseline `{name}` | {variant} | – | {b['fg_ari']:.3f} | "
                     f"{num(b5.get('fg_ari')):.3f} | {b['msc']:.3f} | "
                     f"{num(b.get('location_error')):.3f} | – | – |")
    lines += ["", "## Every run", "", "| run | steps | minutes | FG-ARI (320) | FG-ARI (5,000) | ARI (320) | mSC | "
              "location error | images/s | overrides |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r["test320"]
        lines.append(f"| {r['name']} | {r['steps']} | {r['minutes']:.1f} | {t['fg_ari']:.3f} | "
                     f"{r['test5000']['fg_ari']:.3f} | {t['ari']:.3f} | {t['msc']:.3f} | "
                     f"{num(t.get('location_error')):.3f} | {r['img_per_s']:.1f} | "
                     f"{r['overrides'] or '–'} |")

    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(4.2 * len(VARIANTS), 3.2), squeeze=False)
    colours = {}
    for ax, variant in zip(axes[0], VARIANTS, strict=True):
        for r in runs:
            if r["variant"] != variant:
                continue
            config = Path(r["config"]).stem + (f" + {r['overrides']}" if r["overrides"] else "")
            colour = colours.setdefault(config, f"C{len(colours)}")
            ax.plot([c["minutes"] for c in r["curve"]], [c["fg_ari"] for c in r["curve"]], color=colour, alpha=0.8,
                    label=f"{config} (seed {r['seed']})")
        for (name, v, n), b in baselines.items():
            if v == variant and n == "320" and name in ("kmeans-rgb", "connected-components"):
                ax.axhline(b["fg_ari"], ls="--", lw=0.8, color="grey")
                ax.text(0, b["fg_ari"], name, fontsize=6, va="bottom")
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("training minutes (1 CPU thread)")
        ax.set_ylabel("FG-ARI (128 test images)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.results / "multi_dsprites_fg_ari.png", dpi=110)
    lines += ["", "## FG-ARI against training time", "",
              "Periodic evaluations during training (first 128 test images; grey lines: baselines on the 320).", "",
              "![FG-ARI against wall-clock minutes](multi_dsprites_fg_ari.png)", ""]
    ablation = args.results / "ablation_plus.md"
    if ablation.exists():
        lines += ["## Ablation of the plus config (validation data, 3 training seeds)", "",
                  "Each row leaves one option of `configs/multi_dsprites_plus.yaml` out; colored_on_grayscale "
                  "validation data (seed 1, 320 images), a 500-step cosine schedule (half the shipped one), "
                  "FG-ARI at the end; `scripts/ablation.sh`, then `python scripts/ablation_table.py > "
                  "results/ablation_plus.md`.", "", ablation.read_text().strip(), ""]
    by_name = {r["name"]: r for r in runs}
    for run in args.slots:
        out = args.results / f"slots_{run.name}.png"
        slot_figure(run, by_name[run.name]["variant"], out)
        lines += [f"Test images through `{run.name}`: input, reconstruction, each step's masked reconstruction; "
                  "then each step's mask, scope and window:", "", f"![slots of {run.name}]({out.name})", ""]
    lines += ["## Reading the numbers", "",
              "- FG-ARI scores object pixels only (the paper's and MONet's metric); ARI counts the background "
              "too; mSC is the mean segmentation covering over object pixels; the location error is the mean "
              "distance (normalised units) between each visible object's true centre and the Hungarian-matched "
              "centre of an object slot's mask.",
              "- `kmeans-rgb` scores 1.000 on the coloured variants because every sprite there has its own flat "
              "colour: a per-pixel colour clustering is the ceiling of those two variants, not a peer. The "
              "learned models are the ones that also give each object's location, work the same way on "
              "`binarized`, and on photographs (Flowers) and Atari frames.",
              "- `oracle-<config>` is the config's localization module given a perfect background and perfect "
              "reconstructions: the ceiling of the module with those settings.",
              "- Minutes are training wall clock (evaluations excluded) on one thread while one to five other "
              "training, evaluation or benchmark processes shared the two cores, so images/s here is a third to "
              "a half of what one run alone gets (`locseg bench models`).",
              "- MONet (`configs/monet_multi_dsprites.yaml`, this framework) had a 15-minute wall-clock cap "
              "on the same data, the budget the other runs took: it is about 8x slower per image, so it saw "
              "140 steps; it is far from its published 0.904, which took days of GPU. After 35 minutes it "
              "scored 0.205 on a seed-0 test split (`results/comparison.md`). With the same 15-minute cap on "
              "the other variants (200 steps each, two runs side by side) it scored 0.263 on colored_on_colored "
              "and 0.272 on binarized.",
              "- `binarized`: the trained model scores what its module's oracle scores (0.820 against 0.814 on "
              "the 320 images, 0.858 against 0.857 on the 5,000), and its validation FG-ARI is flat from step "
              "100 on: the ceiling there is the localization module's, not the network's. The concave cut "
              "(`concave_split`, `results/tuning_v2.md` round 5) raised that ceiling from 0.784 / 0.831 and the "
              "trained model from 0.793 / 0.832 (rows `_noconcave`). What remains are sprites hidden behind "
              "another but for a sliver, and overlaps whose outline has no dent a pixel deep. The 320 images "
              "are harder for the module than the 5,000 (43 % of them hold touching sprites, 41 % of the "
              "5,000). Seeds 0 and 1 first ran before an exact speed-up of the cuts' neighbourhood maxima (19-20 "
              "minutes beside a third process); rerun after it they gave the same scores to the last digit in "
              "6.5-7 minutes, the figures above.",
              "- The ablation trains half the shipped schedule on validation data, so its full-config row "
              "(0.977) is not a test number; each option's change is measured against it on the same data "
              "and seeds.", "",
              "## Reproduce", "", "```bash",
              "# trained runs (one thread each; each writes results/runs/<config>_<variant>_s<seed>.json)",
              "scripts/multi_dsprites_final.sh configs/multi_dsprites.yaml colored_on_grayscale SEED",
              "scripts/multi_dsprites_final.sh configs/multi_dsprites_plus.yaml colored_on_grayscale SEED",
              "scripts/multi_dsprites_final.sh configs/multi_dsprites_plus.yaml colored_on_colored SEED",
              "scripts/multi_dsprites_final.sh configs/multi_dsprites_binarized.yaml binarized SEED",
              "# baselines on the same splits (oracle with the named config's localization settings)",
              "scripts/multi_dsprites_baselines.sh colored_on_grayscale configs/multi_dsprites.yaml "
              "configs/multi_dsprites_plus.yaml",
              "scripts/multi_dsprites_baselines.sh colored_on_colored configs/multi_dsprites_plus.yaml",
              "scripts/multi_dsprites_baselines.sh binarized configs/multi_dsprites_binarized.yaml",
              "# the binarized oracle without the concave cut (N: 320 on data/final_binarized, 5000 on "
              "data/final5k_binarized)",
              "locseg evaluate --baseline oracle --config configs/multi_dsprites_binarized.yaml "
              "model.segmenter.localization.concave_split=0 --data DATA --split test "
              "--json results/runs/baseline_oracle-multi_dsprites_binarized-noconcave_binarized_N.json",
              "# the binarized runs without it (relabelled _noconcave after they ran as the config then was)",
              "scripts/multi_dsprites_final.sh configs/multi_dsprites_binarized.yaml binarized SEED "
              "model.segmenter.localization.concave_split=0",
              "# the ablation table (validation data)",
              "scripts/ablation.sh && python scripts/ablation_table.py > results/ablation_plus.md",
              "# MONet on the same budget (VARIANT: each of the three)",
              "scripts/multi_dsprites_final.sh configs/monet_multi_dsprites.yaml VARIANT 0 "
              "train.max_minutes=15 train.max_steps=100000",
              "# this page",
              "python scripts/multi_dsprites_report.py --slots runs/final/<run> ...", "```", ""]
    (args.results / "multi_dsprites.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.results / 'multi_dsprites.md'}")


if __name__ == "__main__":
    main()
