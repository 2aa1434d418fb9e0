"""Figures: dataset sample grids (training figures live here too)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

# Label colours: 0 = background in black, then 15 well-separated colours (cycled beyond 15).
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
        [0, 128, 128], [0, 0, 128], [170, 110, 40], [255, 250, 200], [128, 0, 0],
    ],
    dtype=np.uint8,
)
"""(16, 3) uint8 label colours; label 0 is black, labels >= 16 reuse colours 1..15."""


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """Colour an instance label map with the fixed :data:`PALETTE`.

    Args:
        labels: (N, H, W) (or any shape) non-negative integer labels, 0 = background.

    Returns:
        (N, H, W, 3) uint8: black for 0, label ``l > 0`` gets ``PALETTE[1 + (l - 1) % 15]``.

    Raises:
        ValueError: negative labels.

    >>> colorize_labels(np.array([[[0, 1, 16]]]))[0, 0].tolist()
    [[0, 0, 0], [230, 25, 75], [230, 25, 75]]
    """
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    labels = labels.astype(np.int64)
    idx = np.where(labels > 0, 1 + (labels - 1) % (len(PALETTE) - 1), 0)  # (N, H, W)
    return PALETTE[idx]  # (N, H, W, 3)


def dataset_grid(
    data: dict[str, Any],
    out_png: str | Path,
    num: int = 16,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of dataset samples: each image above its coloured label map.

    Args:
        data: a split as :func:`locseg.data.load_split` returns it; needs ``images``
            (N, H, W, 3) uint8 and uses ``labels`` (N, H, W) when present.
        out_png: output path (parent directories are created).
        num: number of samples (at most N), drawn without replacement with ``seed`` and shown
            in index order, 8 per row.
        seed: seed for choosing the samples.
        title: optional figure title.

    Returns:
        the written path.

    Raises:
        ValueError: ``num`` < 1 or an empty split.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = data["images"]
    n = images.shape[0]
    if num < 1 or n == 0:
        raise ValueError(f"need num >= 1 and a non-empty split, got num={num}, {n} samples")
    num = min(num, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=num, replace=False))  # (num,)
    labels = data.get("labels")
    cols = min(num, 8)
    rows = math.ceil(num / cols)
    per_sample = 2 if labels is not None else 1
    height = 1.3 * rows * per_sample + (0.4 if title else 0.1)
    fig = Figure(figsize=(1.3 * cols, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows * per_sample, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        ax = axes[r * per_sample, c]
        ax.imshow(np.asarray(images[i]), interpolation="nearest")
        ax.set_title(f"#{int(i)}", fontsize=7, pad=2)
        if labels is not None:
            axes[r * per_sample + 1, c].imshow(colorize_labels(np.asarray(labels[i])), interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - (0.35 / height if title else 0.0)))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png
