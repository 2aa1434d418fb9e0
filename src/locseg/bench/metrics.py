"""Speed of ``locseg.metrics``: all scores on a Multi-dSprites-sized batch, and ARI / AMI on Atari frames
against scikit-learn's per-image functions, measured side by side in one run.

The label maps are synthetic (rectangles on a background, the prediction shifted, with merged
objects and 2% label noise), built without Python loops over images. The work per image depends
only on the image size and the number of labels, not on the picture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from .. import metrics
from .timing import interleaved, median_time

log = logging.getLogger(__name__)


def _frames(num: int, height: int, width: int, objects: int, pred_labels: int,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted uint8 label maps (num, H, W): 0 = background, 1..objects rectangles."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(height).view(1, height, 1)  # (1, H, 1)
    xs = torch.arange(width).view(1, 1, width)  # (1, 1, W)
    true = torch.zeros(num, height, width, dtype=torch.uint8)  # (B, H, W)
    pred = torch.zeros(num, height, width, dtype=torch.uint8)  # (B, H, W)
    # each object goes to one predicted label; with fewer labels than objects some objects merge
    target = torch.randint(1, pred_labels, (objects + 1,), generator=g)  # (objects + 1,)
    for k in range(1, objects + 1):  # a loop over objects; every image at once
        h = torch.randint(height // 10, height // 3, (num, 1, 1), generator=g)  # (B, 1, 1)
        w = torch.randint(width // 10, width // 3, (num, 1, 1), generator=g)
        y0 = (torch.rand(num, 1, 1, generator=g) * (height - h)).long()
        x0 = (torch.rand(num, 1, 1, generator=g) * (width - w)).long()
        true[(ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)] = k  # (B, H, W) box
        dy, dx = torch.randint(-3, 4, (2, num, 1, 1), generator=g)  # the prediction is shifted
        box = (ys >= y0 + dy) & (ys < y0 + dy + h) & (xs >= x0 + dx) & (xs < x0 + dx + w)
        pred[box] = int(target[k])
    noise = torch.rand(num, height, width, generator=g) < 0.02  # (B, H, W)
    pred[noise] = torch.randint(0, pred_labels, (int(noise.sum()),), generator=g, dtype=torch.uint8)
    return true.numpy(), pred.numpy()


def _sklearn_per_image(true: np.ndarray, pred: np.ndarray, ignore_index: int
                       ) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]:
    """scikit-learn's ARI and AMI one image at a time, as two calls returning the per-image scores."""
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    pairs = [(t.ravel()[t.ravel() != ignore_index], p.ravel()[t.ravel() != ignore_index])
             for t, p in zip(true, pred, strict=True)]
    return (lambda: np.array([adjusted_rand_score(t, p) for t, p in pairs]),
            lambda: np.array([adjusted_mutual_info_score(t, p, average_method="arithmetic") for t, p in pairs]))


def run(json_output: bool = False, quick: bool = False, threads: int | None = 1, frames: int | None = None,
        sklearn_frames: int | None = None, small_images: int = 320) -> dict[str, float]:
    """Time the metrics; returns a dict of numbers (seconds, speedups, agreement with scikit-learn).

    Small case: 320 images of 64x64 with 6 labels (background + 5 objects, 6 predicted labels),
    every score as ``train.evaluate`` calls it (one call per score), plus ``label_scores`` (all
    label-map scores from one contingency table), ``masks_to_labels`` and ``redo_iou``.
    Large case: 1,000 Atari frames of 210x160 (100 with ``quick``) with 8 true and 7 predicted
    labels, foreground ARI and AMI (``ignore_index=0``) for all frames in one call each, against
    scikit-learn per frame on a subset (50 frames, 10 with ``quick``), scaled per image. Times are
    medians of 5 interleaved rounds (1 with ``quick``) after a warm-up round (:mod:`.timing`).

    Args:
        json_output: accepted for the CLI's signature; the dict is the same (plain numbers, JSON-safe).
        quick: smaller sizes and one timing repeat, for a smoke test.
        threads: torch CPU threads while measuring (restored afterwards), or None to keep the
            current setting. 1 by default: scikit-learn runs on one core, so this compares like with
            like, and it keeps the numbers meaningful on a shared machine, where torch's OpenMP
            threads wait for busy cores at every operation.
        frames: large-case frames (default 1,000, or 100 with ``quick``).
        sklearn_frames: frames scored by scikit-learn (default 50, or 10 with ``quick``).
        small_images: small-case images.

    Returns:
        Seconds (``*_s``), seconds per image (``*_per_image_s``), speedups vs scikit-learn
        (``*_speedup_vs_sklearn``), the largest absolute difference from scikit-learn on the subset
        (``*_max_abs_diff_vs_sklearn``) and the sizes and thread count used.
    """
    del json_output  # the same numbers either way
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(quick, frames or (100 if quick else 1000), sklearn_frames or (10 if quick else 50),
                        small_images)
    finally:
        torch.set_num_threads(previous)


def _measure(quick: bool, frames: int, subset: int, num: int) -> dict[str, float]:
    """The measurements of ``run`` under the current thread setting."""
    repeats = 1 if quick else 5
    subset = min(subset, frames)
    result: dict[str, float] = {"torch_threads": float(torch.get_num_threads())}

    # small: Multi-dSprites-sized batch
    size, slots = 64, 6
    true, pred = _frames(num, size, size, objects=slots - 1, pred_labels=slots, seed=0)
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(num, slots, 1, size, size, generator=g).softmax(1)  # (B, K, 1, H, W)
    prob = torch.rand(num, size, size, generator=g, dtype=torch.float64)  # (B, H, W)
    fg = true > 0  # (B, H, W)
    calls: dict[str, Callable[[], object]] = {
        "fg_ari": lambda: metrics.ari(true, pred, ignore_index=0),
        "ari": lambda: metrics.ari(true, pred),
        "ami": lambda: metrics.ami(true, pred, ignore_index=0),
        "msc": lambda: metrics.segmentation_covering(true, pred, ignore_index=0),
        "sc": lambda: metrics.segmentation_covering(true, pred, ignore_index=0, weighted=True),
        "redo_iou": lambda: metrics.redo_iou(fg, prob),
        "iou": lambda: metrics.iou(fg, pred > 0),
    }
    result.update({"small_images": float(num), "small_size": float(size), "small_labels": float(slots)})
    total = 0.0
    for name, fn in calls.items():
        seconds = median_time(fn, repeats)
        result[f"small_{name}_s"] = seconds
        total += seconds
    result["small_all_metrics_s"] = total
    result["small_label_scores_s"] = median_time(lambda: metrics.label_scores(true, pred, ignore_index=0), repeats)
    result["small_masks_to_labels_s"] = median_time(lambda: metrics.masks_to_labels(masks), repeats)
    log.info("small: all metrics %.3f s for %d images of %dx%d", total, num, size, size)

    # large: Atari frames, ours on all of them vs scikit-learn per frame on a subset
    true, pred = _frames(frames, 210, 160, objects=7, pred_labels=7, seed=2)
    result.update({"large_frames": float(frames), "large_height": 210.0, "large_width": 160.0,
                   "large_sklearn_frames": float(subset)})
    sklearn_ari, sklearn_ami = _sklearn_per_image(true[:subset], pred[:subset], ignore_index=0)
    times = interleaved({"ari": lambda: metrics.ari(true, pred, ignore_index=0),
                         "ami": lambda: metrics.ami(true, pred, ignore_index=0),
                         "sklearn_ari": sklearn_ari, "sklearn_ami": sklearn_ami}, repeats)
    ours_ari, ours_ami = times["ari"], times["ami"]
    sk_ari, sk_ami = times["sklearn_ari"] / subset, times["sklearn_ami"] / subset  # seconds per image
    ref_ari, ref_ami = sklearn_ari(), sklearn_ami()
    got_ari = metrics.ari(true[:subset], pred[:subset], ignore_index=0).numpy()
    got_ami = metrics.ami(true[:subset], pred[:subset], ignore_index=0).numpy()
    result.update({
        "large_ari_s": ours_ari,
        "large_ami_s": ours_ami,
        "ari_per_image_s": ours_ari / frames,
        "ami_per_image_s": ours_ami / frames,
        "sklearn_ari_per_image_s": sk_ari,
        "sklearn_ami_per_image_s": sk_ami,
        "ari_speedup_vs_sklearn": sk_ari / (ours_ari / frames),
        "ami_speedup_vs_sklearn": sk_ami / (ours_ami / frames),
        "ari_max_abs_diff_vs_sklearn": float(np.max(np.abs(got_ari - ref_ari))),
        "ami_max_abs_diff_vs_sklearn": float(np.max(np.abs(got_ami - ref_ami))),
    })
    log.info("large: ARI %.1fx, AMI %.1fx faster than scikit-learn per frame",
             result["ari_speedup_vs_sklearn"], result["ami_speedup_vs_sklearn"])
    return result
