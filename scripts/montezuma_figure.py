"""docs/figures/montezuma_labels.png: Montezuma label overlays, zoomed on the agent on a ladder and the rope.

Usage: ``.venv/bin/python scripts/montezuma_figure.py [--frames 3000] [--seed 0] [--out PATH]``
(about 5 s; needs ``pip install 'locseg[atari]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from locseg.data import montezuma as M  # noqa: E402
from locseg.viz import PALETTE, colorize_labels  # noqa: E402


def _overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    colours = colorize_labels(labels[None])[0].astype(np.float32)  # (H, W, 3)
    out = image.astype(np.float32)
    fg = labels > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    return out.astype(np.uint8)


def _on(labels: np.ndarray, name: str) -> np.ndarray:
    """(N,) how many of the agent's pixels lie inside the object's box, when the object's pixels surround it."""
    (top, bottom, left, right), _ = M.STATIC_BOXES[name]
    agent_in_box = (labels[:, top:bottom, left:right] == 1).sum((1, 2))  # (N,)
    obj = labels == M.OBJECTS.index(name) + 1  # (N, H, W)
    rows = np.nonzero((labels == 1).any(2))  # agent rows per frame
    above = np.zeros(len(labels), bool)
    below = np.zeros(len(labels), bool)
    for i in np.flatnonzero(agent_in_box > 40):
        r = rows[1][rows[0] == i]
        above[i], below[i] = obj[i, : r.min()].any(), obj[i, r.max() + 1:].any()
    return np.where(above & below, agent_in_box, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/figures/montezuma_labels.png")
    args = p.parse_args()

    data = M.collect_split(args.frames, args.seed, progress=True)
    images, labels, centres = data["images"], data["labels"], data["centres"]
    ladder = int(np.argmax(_on(labels, "bottom_right_ladder") + _on(labels, "bottom_left_ladder")))
    rope = int(np.argmax(_on(labels, "rope")))
    full = int(np.argmax(centres[:, 0, 0] * M.HEIGHT > 160))  # first frame with the agent on the bottom floor

    fig = plt.figure(figsize=(11, 6.2), dpi=72)
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1])
    for col, (title, img) in enumerate([("frame", images[full]), ("labels and centres", _overlay(images[full],
                                                                                               labels[full]))]):
        ax = fig.add_subplot(grid[:, col])
        ax.imshow(img, interpolation="nearest")
        if col == 1:
            cy, cx = centres[full, :, 0] * M.HEIGHT - 0.5, centres[full, :, 1] * M.WIDTH - 0.5
            ax.scatter(cx, cy, marker="+", c="white", s=40, linewidths=1)
        ax.set_title(f"{title} (frame {full})", fontsize=9)
        ax.axis("off")
    for row, (name, i) in enumerate([("agent on a ladder", ladder), ("agent on the rope", rope)]):
        r, c = np.nonzero(labels[i] == 1)
        cy, cx = int(r.mean()), int(c.mean())
        top, left = int(np.clip(cy - 20, 0, M.HEIGHT - 40)), int(np.clip(cx - 16, 0, M.WIDTH - 32))
        crop = np.s_[top:top + 40, left:left + 32]
        for col, img in enumerate([images[i][crop], colorize_labels(labels[i][crop][None])[0]]):
            ax = fig.add_subplot(grid[row, 2 + col])
            ax.imshow(img, interpolation="nearest")
            ax.set_title(f"{name}: {'frame' if col == 0 else 'labels'} ({i})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=PALETTE[j + 1] / 255, label=f"{j + 1} {n}") for j, n in enumerate(M.OBJECTS)]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out} (ladder frame {ladder}, rope frame {rope})")


if __name__ == "__main__":
    main()
