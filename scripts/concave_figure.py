"""Figure of the concave cut (``localization/concave.py``) on generated binarized Multi-dSprites blobs.

    .venv/bin/python scripts/concave_figure.py [--seed 11] [--out docs/figures/concave_cut.png]

For the first images (of a freshly generated binarized split) whose white blob of touching sprites
the cut splits, one row each: the image with its true sprites, the blob's convex hull with its dents
(the two used for the cut marked), and the two sides of the cut. The seed is none of the reported
data's (777, 778) and none of the tuning sets' (1, 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from locseg.data.multi_dsprites import generate_split  # noqa: E402
from locseg.localization.concave import hull_depth, label_components, split_concave  # noqa: E402
from locseg.localization.connected import connected_to_centre  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("docs/figures/concave_cut.png"))
    args = p.parse_args()
    split = generate_split("binarized", 200, args.seed)
    images, labels = split["images"], split["labels"]  # (N, H, W, 3) uint8, (N, H, W)
    rows = []
    for i in range(len(images)):
        fg = torch.from_numpy(labels[i] > 0)  # (H, W)
        count = len(np.unique(labels[i])) - 1
        pixel = fg.nonzero()[0]  # any sprite pixel: the blob it belongs to
        blob = connected_to_centre(fg[None], pixel[None])  # (1, H, W)
        inside = np.unique(labels[i][blob[0].numpy()])
        if count < 2 or len(inside) < 2:
            continue  # only blobs of two or more touching sprites
        centre = blob[0].nonzero().float().mean(0).round().long()[None]  # (1, 2)
        found, part = split_concave(blob, centre, 1.0, 60)
        if bool(found[0]):
            rows.append((i, blob[0], part[0]))
        if len(rows) == args.rows:
            break
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for (i, blob, part), ax in zip(rows, axes, strict=True):
        depth = hull_depth(blob[None])[0]  # (H, W)
        dents = (depth >= -1e-6) & ~blob
        dent_labels = label_components(dents[None], 8)[0]
        deep = [int(k) for k in dent_labels.unique()[1:] if depth[dent_labels == k].max() >= 1.0]
        ax[0].imshow(labels[i], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax[0].set_title(f"image {i}: true sprites", fontsize=9)
        view = np.zeros(blob.shape + (3,))
        view[blob.numpy()] = 0.85
        view[dents.numpy()] = (0.35, 0.55, 0.95)
        for k in deep:
            view[(dent_labels == k).numpy()] = (0.95, 0.45, 0.1)
        ax[1].imshow(view, interpolation="nearest")
        ax[1].set_title("blob, hull dents (≥ 1 px deep: orange)", fontsize=9)
        sides = np.zeros(blob.shape + (3,))
        sides[(blob & part).numpy()] = (0.2, 0.7, 0.3)
        sides[(blob & ~part).numpy()] = (0.8, 0.3, 0.6)
        ax[2].imshow(sides, interpolation="nearest")
        ax[2].set_title("the two sides of the cut", fontsize=9)
        for a in ax:
            a.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
