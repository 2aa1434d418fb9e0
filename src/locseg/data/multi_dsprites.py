"""Multi-dSprites: several dSprites shapes painted over each other on a 64x64 background.

Follows the recipe of DeepMind's ``multi_object_datasets`` (Multi-dSprites as used by MONet and
IODINE) with our own renderer (:mod:`locseg.data.dsprites`):

- Each sprite's latents are drawn uniformly from the dSprites grid: shape (square, ellipse,
  heart), one of 6 scales, one of 40 orientations, one of 32 x and 32 y positions.
- Sprites are painted in order; a later sprite occludes the earlier ones where they overlap.
- Variants (the official names; ``max_objects`` excludes the background, the official files
  have ``max_objects + 1`` masks):

  =======================  ===========  =========================================================
  variant                  objects      colours
  =======================  ===========  =========================================================
  colored_on_grayscale     2-5          sprites HSV with hue U(0, 1), saturation U(0.5, 1),
                                        value U(0.5, 1); uniform grey background, level U(0, 1)
  colored_on_colored       1-4          sprites and background RGB, each channel U(0, 1)
  binarized                1-3          white sprites on black
  =======================  ===========  =========================================================

  The number of objects is uniform over the range. The colour ranges are our choice: the
  original generator is unpublished, and these ranges give the look of its images (saturated,
  bright sprites; any grey level behind them).

Each split holds the arrays described in :mod:`locseg.data` plus the latents: for N images and
M = ``max_objects`` slots (slot j is label j + 1, in painting order; absent slots are zero):

- ``images`` (N, 64, 64, 3) uint8, ``labels`` (N, 64, 64) uint8 (0 background; a pixel belongs
  to the top-most sprite covering it)
- ``visibility`` (N, M) bool: the object has at least one pixel in ``labels``
- ``centres`` (N, M, 2) float32: centroid (y, x) of the object's visible pixels, pixel centres at
  ``(row + 0.5) / 64``, ``(col + 0.5) / 64``; NaN for absent or fully occluded objects
- ``shape`` (N, M) int8 (1 square, 2 ellipse, 3 heart, 0 absent), ``scale`` (N, M) float32,
  ``orientation`` (N, M) float32 radians, ``position`` (N, M, 2) float32 latent (x, y) in [0, 1],
  ``colour`` (N, M, 3) float32 RGB in [0, 1] (the image holds ``round(255 * colour)``)
- ``background`` (N, 3) float32 RGB in [0, 1], ``num_objects`` (N,) uint8
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from locseg.data import dsprites as D
from locseg.data import write_split
from locseg.data.io import atomic_output_dir, label_statistics, split_seeds

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different data."""

IMAGE_SIZE = D.IMAGE_SIZE
CHUNK = 1000  # images rendered per vectorised step (one progress-bar tick)


@dataclass(frozen=True)
class VariantSpec:
    """How one Multi-dSprites variant samples its scenes."""

    min_objects: int
    max_objects: int
    colours: str  # "hsv_on_grey", "rgb_on_rgb" or "white_on_black"


SPECS: dict[str, VariantSpec] = {
    "colored_on_grayscale": VariantSpec(2, 5, "hsv_on_grey"),
    "colored_on_colored": VariantSpec(1, 4, "rgb_on_rgb"),
    "binarized": VariantSpec(1, 3, "white_on_black"),
}
VARIANTS: tuple[str, ...] = tuple(SPECS)
"""Valid variant names; the first is the main one."""

HSV_SATURATION = (0.5, 1.0)
HSV_VALUE = (0.5, 1.0)


def get_spec(variant: str) -> VariantSpec:
    """The :class:`VariantSpec` of a variant name.

    Raises:
        ValueError: unknown variant (the message lists the valid ones).
    """
    try:
        return SPECS[variant]
    except (KeyError, TypeError):
        raise ValueError(f"unknown Multi-dSprites variant {variant!r}; valid: {', '.join(VARIANTS)}") from None


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Convert HSV to RGB, all channels in [0, 1].

    Args:
        hsv: (..., 3) hue, saturation, value.

    Returns:
        (..., 3) RGB.

    >>> hsv_to_rgb(np.array([[0.0, 1.0, 1.0], [1 / 3, 1.0, 0.5], [0.5, 0.0, 0.25]])).round(3)
    array([[1.  , 0.  , 0.  ],
           [0.  , 0.5 , 0.  ],
           [0.25, 0.25, 0.25]])
    """
    h, s, v = np.moveaxis(np.asarray(hsv, dtype=np.float64), -1, 0)
    # Each channel k is v - v*s*clip(min(f, 4 - f), 0, 1) with f = (k_offset + 6h) mod 6.
    k = (np.array([5.0, 3.0, 1.0]).reshape((3,) + (1,) * h.ndim) + 6.0 * h) % 6.0  # (3, ...)
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)  # (3, ...)
    return np.moveaxis(rgb, 0, -1)


def _sample_scenes(spec: VariantSpec, num: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every random quantity of ``num`` scenes up front (so chunking never changes them)."""
    m = spec.max_objects
    count = rng.integers(spec.min_objects, spec.max_objects + 1, size=num)  # (N,)
    present = np.arange(m)[None, :] < count[:, None]  # (N, M)
    shape = rng.integers(1, 4, size=(num, m))  # (N, M)
    scale = D.SCALES[rng.integers(0, len(D.SCALES), size=(num, m))]  # (N, M)
    orientation = D.ORIENTATIONS[rng.integers(0, len(D.ORIENTATIONS), size=(num, m))]  # (N, M)
    position = D.POSITIONS[rng.integers(0, len(D.POSITIONS), size=(num, m, 2))]  # (N, M, 2) (x, y)
    if spec.colours == "hsv_on_grey":
        hsv = np.stack([rng.uniform(0.0, 1.0, (num, m)), rng.uniform(*HSV_SATURATION, (num, m)),
                        rng.uniform(*HSV_VALUE, (num, m))], -1)  # (N, M, 3)
        colour = hsv_to_rgb(hsv)  # (N, M, 3)
        background = np.repeat(rng.uniform(0.0, 1.0, (num, 1)), 3, axis=1)  # (N, 3)
    elif spec.colours == "rgb_on_rgb":
        colour = rng.uniform(0.0, 1.0, (num, m, 3))  # (N, M, 3)
        background = rng.uniform(0.0, 1.0, (num, 3))  # (N, 3)
    else:  # white_on_black
        colour = np.ones((num, m, 3))
        background = np.zeros((num, 3))
    p3 = present[..., None]
    return {
        "num_objects": count.astype(np.uint8),
        "shape": np.where(present, shape, 0).astype(np.int8),
        "scale": np.where(present, scale, 0.0).astype(np.float32),
        "orientation": np.where(present, orientation, 0.0).astype(np.float32),
        "position": np.where(p3, position, 0.0).astype(np.float32),
        "colour": np.where(p3, colour, 0.0).astype(np.float32),
        "background": background.astype(np.float32),
    }


def paint(
    shape: np.ndarray,
    scale: np.ndarray,
    orientation: np.ndarray,
    position: np.ndarray,
) -> np.ndarray:
    """Paint sprites in slot order into instance label maps.

    Args:
        shape: (B, M) int shape ids, 0 = absent slot.
        scale: (B, M) scales; ignored where absent.
        orientation: (B, M) radians; ignored where absent.
        position: (B, M, 2) latent (x, y); ignored where absent.

    Returns:
        (B, 64, 64) uint8 labels: 0 background, j + 1 where slot j is the top-most sprite.
    """
    b, m = shape.shape
    labels = np.zeros((b, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    img, slot = np.nonzero(shape > 0)  # (S,), (S,) sprites, image-major
    if img.size == 0:
        return labels
    masks, top, left = D.render_windows(shape[img, slot], scale[img, slot], orientation[img, slot],
                                        position[img, slot, 0], position[img, slot, 1])  # (S, W, W)
    win = np.arange(D.WINDOW)
    for j in range(m):  # slot order = painting order: later slots cover earlier ones
        sel = np.flatnonzero(slot == j)  # at most one sprite per image, so no index collisions
        if sel.size == 0:
            continue
        rows = (top[sel, None] + win)[:, :, None]  # (s, W, 1)
        cols = (left[sel, None] + win)[:, None, :]  # (s, 1, W)
        idx = (img[sel, None, None], rows, cols)
        labels[idx] = np.where(masks[sel], np.uint8(j + 1), labels[idx])  # (s, W, W)
    return labels


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def generate_split(variant: str, num: int, seed: int, progress: bool = False) -> dict[str, np.ndarray]:
    """Generate ``num`` Multi-dSprites scenes in memory.

    Deterministic: the same (variant, num, seed) gives the same bytes whatever the chunk size
    (all random draws are made up front). A different ``num`` gives different scenes.

    Args:
        variant: one of :data:`VARIANTS`.
        num: number of images, > 0.
        seed: seed of ``numpy.random.default_rng``.
        progress: show a tqdm bar counting images.

    Returns:
        dict of arrays, see the module docstring: ``images`` (N, 64, 64, 3) uint8, ``labels``
        (N, 64, 64) uint8, ``visibility`` (N, M) bool, ``centres`` (N, M, 2) float32, ``shape``
        (N, M) int8, ``scale``/``orientation`` (N, M) float32, ``position`` (N, M, 2) float32,
        ``colour`` (N, M, 3) float32, ``background`` (N, 3) float32, ``num_objects`` (N,) uint8.

    Raises:
        ValueError: unknown variant, non-positive ``num``.
    """
    spec = get_spec(variant)
    num = _check_count("num", num)
    rng = np.random.default_rng(seed)
    out = _sample_scenes(spec, num, rng)
    m = spec.max_objects
    out["images"] = np.empty((num, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    out["labels"] = np.empty((num, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    out["visibility"] = np.empty((num, m), dtype=bool)
    out["centres"] = np.empty((num, m, 2), dtype=np.float32)
    # Palette per image: entry 0 background, entry j + 1 object j; uint8 as stored in the image.
    palette = np.concatenate([out["background"][:, None], out["colour"]], 1)  # (N, M+1, 3)
    palette = np.rint(palette * 255.0).astype(np.uint8)  # (N, M+1, 3)
    bar = tqdm(total=num, desc=f"multi_dsprites/{variant}", unit="img", disable=not progress)
    for start in range(0, num, CHUNK):
        sl = slice(start, min(start + CHUNK, num))
        labels = paint(out["shape"][sl], out["scale"][sl], out["orientation"][sl], out["position"][sl])
        out["labels"][sl] = labels  # (B, 64, 64)
        b = labels.shape[0]
        out["images"][sl] = palette[sl][np.arange(b)[:, None, None], labels]  # (B, 64, 64, 3)
        out["visibility"][sl], out["centres"][sl] = label_statistics(labels, m)
        bar.update(b)
    bar.close()
    return out


def generate(
    out_dir: str | Path,
    variant: str,
    num_train: int,
    num_test: int,
    seed: int,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a Multi-dSprites dataset directory with ``train`` and ``test`` splits.

    The splits use independent seeds derived from ``seed`` (``numpy.random.SeedSequence(seed)
    .spawn(2)``); each split's ``meta.json`` records ``dataset``, ``variant``, ``seed``,
    ``split_seed`` (``generate_split(variant, count, split_seed)`` reproduces the split),
    ``count``, ``max_objects``, ``min_objects``, ``generator_version`` and ``image_size``.
    Everything is written under a temporary sibling directory that is renamed into place once
    complete, so an error or Ctrl-C leaves nothing half-written behind.

    Args:
        out_dir: dataset directory to create.
        variant: one of :data:`VARIANTS`.
        num_train: training images, > 0.
        num_test: test images, > 0.
        seed: master seed.
        overwrite: replace an existing non-empty ``out_dir``.
        progress: show tqdm bars.

    Returns:
        dict with ``out_dir`` (str), ``variant``, ``counts`` ({split: n}), ``split_seeds``,
        ``seconds`` (wall time).

    Raises:
        ValueError: unknown variant or non-positive counts.
        DataError: ``out_dir`` exists and is not empty (without ``overwrite``), or is unwritable.
    """
    t0 = time.perf_counter()
    spec = get_spec(variant)
    counts = {"train": _check_count("num_train", num_train), "test": _check_count("num_test", num_test)}
    seeds = split_seeds(seed, tuple(counts))

    with atomic_output_dir(out_dir, overwrite) as tmp:
        for split, count in counts.items():
            t = time.perf_counter()
            arrays = generate_split(variant, count, seeds[split], progress=progress)
            log.info("generated %s/%s: %d images in %.1f s", variant, split, count, time.perf_counter() - t)
            meta = {"dataset": "multi_dsprites", "variant": variant, "split": split, "seed": int(seed),
                    "split_seed": seeds[split], "count": count, "max_objects": spec.max_objects,
                    "min_objects": spec.min_objects, "generator_version": GENERATOR_VERSION,
                    "image_size": IMAGE_SIZE}
            write_split(tmp / split, arrays, meta)
            del arrays  # only one split in memory at a time
    seconds = time.perf_counter() - t0
    log.info("wrote %s (%s) in %.1f s", out_dir, variant, seconds)
    return {"out_dir": str(out_dir), "variant": variant, "counts": counts, "split_seeds": seeds,
            "seconds": seconds}
