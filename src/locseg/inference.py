"""Inference and evaluation, shared by training, ``locseg evaluate`` and ``locseg segment``.

One path from uint8 images to model input (:func:`to_tensor`: torch bilinear resize, antialiased
when shrinking), one way to run a model for its masks (:func:`predict`: eval mode, seeded), and
:func:`evaluate`, which scores those masks with :mod:`locseg.metrics`. No training here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .images import resize_images
from .types import ModelOutput

log = logging.getLogger(__name__)


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str, size: int) -> torch.Tensor:
    """uint8 images -> float (B, 3, size, size) in [0, 1] on ``device``.

    Args:
        images: a (B, H, W, 3) uint8 array, or a sequence of (H_i, W_i, 3) uint8 arrays whose sizes
            may differ (each is resized on its own).
        device: where the tensor goes.
        size: side of the square the model sees.

    Returns:
        (B, 3, size, size) float tensor: bilinear resize, antialiased when shrinking.
    """
    if isinstance(images, np.ndarray):
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(device)  # (B, H, W, 3) a writable copy
        return resize_images(x.permute(0, 3, 1, 2).float().div_(255.0), size)  # (B, 3, size, size)
    return torch.cat([to_tensor(np.asarray(image)[None], device, size) for image in images])  # (B, 3, size, size)


@contextlib.contextmanager
def seeded_eval(model: nn.Module, seed: int) -> Iterator[None]:
    """Eval mode and a seeded CPU RNG (the module's GMM start) inside; both restored on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | Sequence[np.ndarray], device: torch.device | str, size: int,
            batch_size: int = 64, seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Run a model on uint8 images resized to ``size`` (see :func:`to_tensor`).

    ``progress`` shows a tqdm bar on stderr counting images (the CLI turns it on).

    Returns:
        ``masks`` (N, K, size, size) and ``locations`` (N, K, 2). The module's random draws (GMM
        start) are seeded, so results repeat.
    """
    from tqdm.auto import tqdm

    masks, locations = [], []
    bar = tqdm(total=len(images), desc="predict", unit="img", disable=None if progress else True)
    with seeded_eval(model, seed), bar:
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start:start + batch_size], device, size)  # (B, 3, size, size)
            out: ModelOutput = model(x)
            masks.append(out.masks[:, :, 0].float().cpu())  # (B, K, size, size)
            locations.append(out.locations.float().cpu())  # (B, K, 2)
            bar.update(len(x))
    return {"masks": torch.cat(masks).numpy(), "locations": torch.cat(locations).numpy()}


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Soft masks (N, K, s, s) -> (N, K, height, width), bilinear, renormalised to sum to one over K."""
    m = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False).clamp_min(0)  # (N, K, H, W)
    return m / m.sum(1, keepdim=True).clamp_min(1e-8)  # (N, K, H, W)


def evaluate(model: nn.Module, split: dict[str, Any], device: torch.device | str, size: int,
             num_images: int | None = None, batch_size: int = 64, seed: int = 0,
             progress: bool = False) -> dict[str, float]:
    """Score a model on a dataset split with the metrics its labels allow (``progress``: a tqdm bar
    over the images on stderr while the model runs).

    Returns ``fg_ari`` (ARI ignoring background pixels), ``ari``, ``msc``, ``sc``, ``ami``
    (foreground AMI), ``location_error`` (mean distance, normalised units, between true object
    centres and Hungarian-matched object-slot centres) and ``num_images``; with ``meta["iou"]`` set,
    also ``iou`` of the foreground (1 - background slot mask) against ``labels > 0``: ReDO's rule
    (``redo``, the better of the two assignments) or plain IoU at 0.5 (``foreground``). Images where a score is
    undefined (e.g. no foreground pixel) are left out of its mean; ``*_defined`` counts the rest.
    """
    if num_images is not None and num_images < 1:
        raise ValueError(f"the number of images to evaluate must be >= 1, got {num_images}")
    n = len(split["images"]) if num_images is None else min(num_images, len(split["images"]))
    pred = predict(model, split["images"][:n], device, size, batch_size, seed, progress)
    result: dict[str, float] = {"num_images": float(n)}
    if "labels" not in split:
        log.warning("this split has no labels: only the number of images is reported, no scores")
        return result
    true = np.asarray(split["labels"][:n]).astype(np.int64)  # (N, H, W)
    masks = torch.from_numpy(pred["masks"])  # (N, K, s, s)
    if masks.shape[-2:] != true.shape[-2:]:
        masks = F.interpolate(masks, size=true.shape[-2:], mode="bilinear", align_corners=False)  # (N, K, H, W)
    labels = metrics.masks_to_labels(masks)  # (N, H, W)
    fg = metrics.label_scores(true, labels, ignore_index=0)  # ari, ami, msc, sc over foreground pixels
    scores = {"fg_ari": fg["ari"], "ari": metrics.ari(true, labels), "ami": fg["ami"], "msc": fg["msc"],
              "sc": fg["sc"]}
    for name, values in scores.items():
        summary = metrics.aggregate(values)  # undefined (NaN) images left out of the mean, counted
        result[name] = summary.mean
        result[f"{name}_defined"] = float(summary.n_defined)
    iou_rule = split.get("meta", {}).get("iou")  # "redo" (Flowers) | "foreground" (image folders with masks)
    if iou_rule in ("redo", "foreground"):
        fg_prob = 1.0 - masks[:, 0]  # (N, H, W) everything but the background slot
        values = (metrics.redo_iou(true > 0, fg_prob) if iou_rule == "redo"
                  else metrics.iou(true > 0, fg_prob >= 0.5))
        summary = metrics.aggregate(values)
        result["iou"], result["iou_defined"] = summary.mean, float(summary.n_defined)
    if "centres" in split and "visibility" in split:
        total, count = metrics.location_error(np.asarray(split["centres"][:n]), np.asarray(split["visibility"][:n]),
                                              pred["locations"][:, 1:])
        result["location_error"] = total / count if count else float("nan")
        names = split.get("meta", {}).get("objects")
        if names:
            paper = {}
            if split["meta"].get("dataset") == "montezuma":
                from .data.montezuma import PAPER_TABLE2 as paper
            result.update(object_locations(np.asarray(split["centres"][:n]), np.asarray(split["visibility"][:n]),
                                           pred["locations"][:, 1:], names, paper))
    return result


def object_locations(true_centres: np.ndarray, visible: np.ndarray, pred: np.ndarray, names: Sequence[str],
                     reference: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Each named object's mean true centre, mean matched slot centre and mean distance between them.

    Args:
        true_centres: (N, M, 2) normalised (y, x), NaN for absent objects; object j is ``names[j]``.
        visible: (N, M) bool.
        pred: (N, K', 2) centres of the object slots, matched to the objects per image as in
            ``metrics.location_error`` (Hungarian, minimum total distance).
        names: the M object names.
        reference: optional published (y, x) per name (the paper's Table 2), copied beside ours.

    Returns:
        for each name: ``loc_<name>_true_y/x`` and ``loc_<name>_found_y/x`` (means over the images
        where the object is visible and matched), ``loc_<name>_error`` (mean distance) and
        ``loc_<name>_error_defined`` (that number of images); ``loc_<name>_paper_y/x`` where
        ``reference`` has the name. NaN where the object is never visible.
    """
    found = metrics.matched_locations(true_centres, visible, pred)  # (N, M, 2)
    used = np.isfinite(found).all(-1)  # (N, M) visible and matched
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        rows = used[:, j]  # (N,)
        key = f"loc_{name}"
        with np.errstate(invalid="ignore"):
            true_mean = true_centres[rows, j].mean(0) if rows.any() else np.full(2, np.nan)  # (2,)
            found_mean = found[rows, j].mean(0) if rows.any() else np.full(2, np.nan)  # (2,)
            error = np.linalg.norm(found[rows, j] - true_centres[rows, j], axis=-1)  # (N_j,)
        out[f"{key}_true_y"], out[f"{key}_true_x"] = float(true_mean[0]), float(true_mean[1])
        out[f"{key}_found_y"], out[f"{key}_found_x"] = float(found_mean[0]), float(found_mean[1])
        out[f"{key}_error"] = float(error.mean()) if len(error) else float("nan")
        out[f"{key}_error_defined"] = float(rows.sum())
        if reference and name in reference:
            out[f"{key}_paper_y"], out[f"{key}_paper_x"] = map(float, reference[name])
    return out


def diagnostics_on(model: nn.Module, split: dict[str, Any], device: torch.device | str, size: int, num: int,
                   seed: int = 0) -> dict[str, float]:
    """:func:`locseg.diagnostics.diagnose` on the first ``num`` labelled images of a split."""
    from .diagnostics import diagnose

    x = to_tensor(split["images"][:num], device, size)  # (N, 3, size, size)
    labels = torch.from_numpy(np.asarray(split["labels"][:num]).astype(np.int64)).to(device)  # (N, H, W)
    if labels.shape[-2:] != (size, size):
        labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()  # (N, s, s)
    return {f"diag_{k}": v for k, v in diagnose(model, x, labels, seed).items()}
