"""Figures: dataset sample grids, training slot figures and segmentation overlays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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
    progress: bool = False,
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
        progress: show a tqdm bar on stderr (samples drawn, then the PNG written).

    Returns:
        the written path.

    Raises:
        ValueError: ``num`` < 1, an empty split, or ``out_png`` a folder or not named ``*.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from tqdm.auto import tqdm

    out_png = Path(out_png)
    if out_png.is_dir() or out_png.suffix.lower() != ".png":
        raise ValueError(f"{out_png}: give the path of a PNG file to write (ending in .png), not a folder")
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
    bar = tqdm(total=num + 1, desc="show", unit="img", disable=None if progress else True)  # + 1: the PNG
    with bar:
        for k, i in enumerate(idx):
            r, c = divmod(k, cols)
            ax = axes[r * per_sample, c]
            ax.imshow(np.asarray(images[i]), interpolation="nearest")
            ax.set_title(f"#{int(i)}", fontsize=7, pad=2)
            if labels is not None:
                axes[r * per_sample + 1, c].imshow(colorize_labels(np.asarray(labels[i])), interpolation="nearest")
            bar.update(1)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - (0.35 / height if title else 0.0)))
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, format="png")
        bar.update(1)
    return out_png


# --------------------------------------------------------------------------- model figures


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def slot_figure(x, out, path: str | Path, max_images: int = 4) -> Path:
    """Per image, one row each: input, reconstruction, each slot's mask, scope and window.

    Args:
        x: (B, 3, H, W) inputs in [0, 1] (torch tensor).
        out: the model's :class:`locseg.types.ModelOutput` for ``x``.
        path: PNG file to write (parent folders are created).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B = min(max_images, x.shape[0])
    K = out.masks.shape[1]
    images = x[:B].detach().float().cpu().permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    recon = out.recon[:B].detach().float().cpu().permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    masks = out.masks[:B, :, 0].detach().float().cpu().numpy()  # (B, K, H, W)
    slots = out.slot_recons[:B].detach().float().cpu().permute(0, 1, 3, 4, 2).numpy()  # (B, K, H, W, 3)
    rows = [("mask", masks)]
    for name in ("scopes", "windows"):
        if name in out.extras:
            rows.append((name[:-1], out.extras[name][:B].detach().float().cpu().numpy()))
    nrows = B * (1 + len(rows))
    fig, axes = plt.subplots(nrows, K + 2, figsize=(1.3 * (K + 2), 1.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for b in range(B):
        top = b * (1 + len(rows))
        axes[top, 0].imshow(_to_uint8(images[b]))
        axes[top, 1].imshow(_to_uint8(recon[b]))
        for k in range(K):
            axes[top, k + 2].imshow(_to_uint8(slots[b, k] * masks[b, k][..., None]))
        for r, (name, values) in enumerate(rows, start=1):
            for k in range(K):
                axes[top + r, k + 2].imshow(values[b, k], vmin=0, vmax=1, cmap="viridis")
            axes[top + r, 1].set_ylabel(name, fontsize=7)
            axes[top + r, 0].axis("off")
            axes[top + r, 1].axis("off")
            axes[top + r, 1].text(0.5, 0.5, name, ha="center", va="center", fontsize=8)
        if b == 0:
            axes[0, 0].set_title("input", fontsize=8)
            axes[0, 1].set_title("recon", fontsize=8)
            for k in range(K):
                axes[0, k + 2].set_title("background" if k == 0 else f"slot {k}", fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def segment_overlays(images: list[np.ndarray], results: list[dict[str, np.ndarray]], names: list[str],
                     folder: str | Path, alpha: float = 0.5, start: int = 0) -> list[Path]:
    """One PNG per image: the image, then its label map blended over it with each object's centre.

    Args:
        images: (H, W, 3) uint8 arrays.
        results: per image, ``labels`` (H, W) and ``locations`` (K, 2) normalised (y, x).
        names: file-name stems.
        folder: output folder (created).
        start: number of the first image in the file names (``NNNN_<name>.png``).
    """
    from PIL import ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, res, name) in enumerate(zip(images, results, names, strict=True), start=start):
        colours = colorize_labels(res["labels"][None])[0]  # (H, W, 3)
        blend = (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)
        H, W = image.shape[:2]
        scale = max(1, 256 // max(H, W))
        canvas = Image.new("RGB", (2 * W * scale, H * scale))
        canvas.paste(Image.fromarray(image).resize((W * scale, H * scale), Image.NEAREST), (0, 0))
        canvas.paste(Image.fromarray(blend).resize((W * scale, H * scale), Image.NEAREST), (W * scale, 0))
        draw = ImageDraw.Draw(canvas)
        present = set(np.unique(res["labels"]).tolist())
        for k, (cy, cx) in enumerate(res["locations"]):
            if k == 0 or k not in present:
                continue
            px, py = W * scale + cx * W * scale, cy * H * scale
            draw.line([(px - 4, py), (px + 4, py)], fill="white", width=2)
            draw.line([(px, py - 4), (px, py + 4)], fill="white", width=2)
            draw.text((px + 5, py - 5), str(k), fill="white")
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem) or "image"
        path = folder / f"{i:04d}_{stem}.png"
        canvas.save(path)
        paths.append(path)
    return paths
