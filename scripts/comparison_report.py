"""Write results/comparison.md and results/comparison_fg_ari.png from a scripts/compare.sh run."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args()
    names = {"ours": "paper's model (locseg)", "monet": "MONet"}
    final = {m: json.loads((args.run / f"{m}.json").read_text()) for m in names}
    evals = {m: read_csv(args.run / m / "eval.csv") for m in names}
    bench = json.loads((args.run / "bench_models.json").read_text())
    bench = bench.get("models", bench)  # locseg bench --json: one section per benchmark

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m, label in names.items():
        rows = evals[m]
        ax.plot([r["elapsed_s"] / 60 for r in rows], [r["fg_ari"] for r in rows], marker="o", label=label)
    ax.set_xlabel("training wall-clock (minutes, 1 CPU thread each)")
    ax.set_ylabel("FG-ARI (320 test images)")
    ax.set_title("Multi-dSprites colored_on_grayscale")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.results.mkdir(exist_ok=True)
    fig.savefig(args.results / "comparison_fg_ari.png", dpi=120)

    lines = [
        "# The paper's model vs MONet on Multi-dSprites (same data, seed and budget)",
        "",
        f"Both models trained on the same generated `colored_on_grayscale` data (20,000 train, 320 test "
        f"images, `--seed {args.seed}`) for **{args.minutes:g} minutes of training wall-clock each** "
        "(evaluations excluded), at the same time on this 2-core CPU machine with one thread each, "
        "batch 32, K = 6, 64×64. Final scores are `locseg evaluate` on all 320 test images.",
        "",
        "| model | steps | FG-ARI | ARI | mSC | SC | location error | train img/s (during run) | "
        "bench img/s | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, label in names.items():
        f = final[m]
        last = evals[m][-1]  # the evaluation after the last step
        steps = int(last["step"])
        ips = steps * 32 / last["elapsed_s"]
        mem = bench.get(f"{m}_peak_mem_mb", float("nan"))
        lines.append(f"| {label} | {steps} | {f['fg_ari']:.3f} | {f['ari']:.3f} | {f['msc']:.3f} | {f['sc']:.3f} | "
                     f"{f['location_error']:.3f} | {ips:.1f} | {bench[f'{m}_img_s']:.1f} | {mem:.0f} |")
    seg = yaml.safe_load((args.run / "ours" / "config.yaml").read_text())["model"]["segmenter"]
    loc = seg["localization"]
    lines += [
        "",
        f"Paper's model settings in this run (`runs/compare/ours/config.yaml`): sigma1 = {loc['sigma1']}, "
        f"x_re := m x_re {'on' if seg['mask_recon'] else 'off'}, beta = {seg['beta']}, zeta = {seg['zeta']}, "
        f"gamma = {seg['gamma']}, GMM start `{loc['gmm_init']}`, box {loc['box_size']}, Butterworth f = "
        f"{loc['butterworth_f']}, n = {loc['butterworth_n']}. MONet: `configs/monet_multi_dsprites.yaml`.",
        "",
        f"`locseg bench models` (same process, alternating, batch {bench['batch']}, K = {bench['num_slots']}): "
        f"speed ratio ours/MONet = **{bench['speed_ratio']:.2f}×**.",
        "",
        "![FG-ARI against training wall-clock](comparison_fg_ari.png)",
        "",
        "Reading the numbers:",
        "",
        "- FG-ARI scores object pixels only; ARI counts the background too. mSC/SC (GENESIS) are computed over "
        "object pixels. The location error is the mean distance (normalised units) between each visible "
        "object's true centre and the Hungarian-matched centre of an object slot's mask.",
        "- Both curves are single runs (one seed); evaluations every 150 (ours) and 60 (MONet) steps on the "
        "320 test images. Nothing was tuned on this test split (`results/tuning.md` used a separate "
        "validation set).",
        "- This is a short, CPU-only budget: MONet is reported at 0.904 FG-ARI and the paper's model at "
        "0.621 after full training (paper, Table 1); the order may change with a longer budget.",
        "- The paper's model leaves many object pixels to its background slot while the object steps still "
        "reconstruct poorly (`docs/method.md`, Known limits), which shows in its all-pixel ARI.",
        "",
        f"Reproduce: `MINUTES={args.minutes:g} SEED={args.seed} bash scripts/compare.sh` (writes `runs/compare/` "
        "and this page).",
    ]
    (args.results / "comparison.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
