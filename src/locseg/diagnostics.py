"""Numbers that explain a segmentation score: where the masks go and why.

:func:`diagnose` runs a model on labelled images and reports, over object (foreground) and
background pixels, what the background step explains, where the windows land, how close each
object step's reconstruction comes to its object's colour, FG-ARI by background brightness, and
flags for the usual collapses. The periodic evaluation of ``train.fit`` logs them in ``eval.csv``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from . import metrics
from .types import ModelOutput

log = logging.getLogger(__name__)

# background grey level bins for FG-ARI by brightness (mean RGB of the background pixels)
BRIGHTNESS_BINS = (("dark", 0.0, 1 / 3), ("mid", 1 / 3, 2 / 3), ("bright", 2 / 3, 1.01))


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


def output_diagnostics(x: torch.Tensor, out: ModelOutput, labels: torch.Tensor) -> dict[str, float]:
    """Diagnostics of one model output against the true instance labels.

    Args:
        x: (B, 3, H, W) the images the model saw.
        out: the model's output for ``x``.
        labels: (B, H, W) long true labels at the model's resolution, 0 = background.

    Returns:
        ``fg_as_bg`` (share of object pixels whose argmax slot is 0), ``obj_mass_fg`` (mean total
        mass of the object slots on object pixels), ``slot_collapse`` (share of images with two or
        more objects where one slot holds over 90 % of the object pixels), ``fg_ari_<bin>`` by
        background brightness; for models with a background step and windows also ``q1_fg``,
        ``q1_bg`` (Q_1 on object / background pixels), ``window_cover_fg`` (object pixels inside
        some object window G > 0.5), ``windows_on_bg`` (share of the first n object windows, n the
        number of true objects, centred on a background pixel) and
        ``colour_error`` (mean RGB distance between an object's mean colour and the mean colour
        drawn there by the object step whose window covers it most).
    """
    masks = out.masks[:, :, 0].float()  # (B, K, H, W)
    B, K, H, W = masks.shape
    fg = labels > 0  # (B, H, W)
    pred = masks.argmax(1)  # (B, H, W)
    result = {"fg_as_bg": _mean((pred == 0)[fg]), "obj_mass_fg": _mean(masks[:, 1:].sum(1)[fg])}

    collapsed, multi = 0, 0
    for b in range(B):
        ids = labels[b][fg[b]]
        if ids.unique().numel() < 2:
            continue
        multi += 1
        share = torch.bincount(pred[b][fg[b]], minlength=K).float() / ids.numel()  # (K,)
        collapsed += int(share.max() > 0.9)
    result["slot_collapse"] = collapsed / multi if multi else float("nan")

    fg_ari = metrics.ari(labels, pred, ignore_index=0)  # (B,)
    bg_level = torch.stack([x[b].mean(0)[~fg[b]].mean() if (~fg[b]).any() else x.new_tensor(float("nan"))
                            for b in range(B)])  # (B,)
    for name, lo, hi in BRIGHTNESS_BINS:
        sel = (bg_level >= lo) & (bg_level < hi) & torch.isfinite(fg_ari)
        result[f"fg_ari_{name}"] = _mean(fg_ari[sel])

    extras = out.extras
    if "raw_background" in extras and "windows" in extras:
        q1 = extras["raw_background"].float()  # (B, H, W)
        windows = extras["windows"][:, 1:].float() > 0.5  # (B, K-1, H, W)
        result["q1_fg"] = _mean(q1[fg])
        result["q1_bg"] = _mean(q1[~fg])
        result["window_cover_fg"] = _mean(windows.any(1)[fg])
        centre_on_bg = []
        for b in range(B):
            num_objects = int((labels[b].unique() > 0).sum())
            for k in range(min(K - 1, num_objects)):  # the first steps should each land on an object
                where = windows[b, k].nonzero()
                if len(where):
                    i, j = where.float().mean(0).round().long().tolist()
                    centre_on_bg.append(float(labels[b, i, j] == 0))
        result["windows_on_bg"] = float(np.mean(centre_on_bg)) if centre_on_bg else float("nan")
        errors = []
        for b in range(B):
            for obj in labels[b].unique().tolist():
                if obj == 0:
                    continue
                pix = labels[b] == obj  # (H, W)
                k = int(windows[b][:, pix].float().sum(1).argmax()) + 1
                true_colour = x[b][:, pix].mean(1)  # (3,)
                drawn = out.slot_recons[b, k][:, pix].float().mean(1)  # (3,)
                errors.append(float((true_colour - drawn).norm()))
        result["colour_error"] = float(np.mean(errors)) if errors else float("nan")
    return result


@torch.no_grad()
def diagnose(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
             batch_size: int = 64) -> dict[str, float]:
    """Run ``model`` in eval mode on ``images`` (N, 3, H, W) and average :func:`output_diagnostics`.

    Labels (N, H, W) must be at the model's resolution. Warns in the log when the masks collapse
    (object pixels kept by the background, one slot taking everything, windows on the background).
    """
    from .inference import seeded_eval

    rows, sizes = [], []
    with seeded_eval(model, seed):
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]  # (B, 3, H, W)
            rows.append(output_diagnostics(x, model(x), labels[start:start + batch_size]))
            sizes.append(len(x))
    result = {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows], dtype=float)
        ok = np.isfinite(values)
        result[key] = float(np.average(values[ok], weights=np.array(sizes)[ok])) if ok.any() else float("nan")
    for warning in collapse_warnings(result):
        log.warning(warning)
    return result


def collapse_warnings(d: dict[str, float]) -> list[str]:
    """Plain-language warnings for diagnostics that show a collapsed segmentation."""
    out = []
    if d.get("fg_as_bg", 0) > 0.8:
        out.append(f"collapse: the background slot keeps {d['fg_as_bg']:.0%} of object pixels")
    if d.get("slot_collapse", 0) > 0.8:
        out.append(f"collapse: one slot takes over 90% of the object pixels in {d['slot_collapse']:.0%} of images")
    if d.get("windows_on_bg", 0) > 0.5:
        out.append(f"collapse: {d['windows_on_bg']:.0%} of object windows are centred on the background")
    return out
