"""Intersection over union of binary maps per image, and ReDO's Flowers protocol."""

from __future__ import annotations

import math

import torch

from ._tables import ArrayLike, check_binary, check_pair


def iou(true: ArrayLike, pred: ArrayLike) -> torch.Tensor:
    """Intersection over union of binary maps, per image.

    Args:
        true: (B, H, W) binary map (bool, or integers 0/1).
        pred: (B, H, W) binary map (bool, or integers 0/1).

    Returns:
        (B,) float64 |true & pred| / |true | pred|; NaN where both maps are empty (0/0).

    Raises:
        ValueError: if the shapes differ, are not (B, H, W), or a map is not binary.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)  # (2, 1, 4)
        >>> pred = torch.tensor([[[0, 1, 1, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)
        >>> iou(true, pred).tolist()
        [0.3333333333333333, nan]
    """
    t, p = check_pair(true, pred, ("true", "pred"))
    t, p = check_binary(t, "true"), check_binary(p, "pred")
    inter = (t & p).sum((1, 2)).double()  # (B,)
    union = (t | p).sum((1, 2)).double()  # (B,)
    return inter / union  # 0/0 = NaN where both are empty


def redo_iou(true_fg: ArrayLike, pred_fg: ArrayLike) -> torch.Tensor:
    """The Flowers protocol of ReDO: max(IoU(pred >= 0.5, gt), IoU(pred < 0.5, gt)) per image.

    The model is not told which of its two regions is the foreground, so the better of the two
    assignments counts (Chen, Artieres & Denoyer 2019).

    Args:
        true_fg: (B, H, W) binary ground-truth foreground (bool, or integers 0/1).
        pred_fg: (B, H, W) predicted foreground probability (any real or bool dtype).

    Returns:
        (B,) float64 score in [0, 1]; NaN where the ground truth has no foreground pixel.

    Raises:
        ValueError: if the shapes differ, are not (B, H, W), or ``true_fg`` is not binary.

    Example:
        >>> import torch
        >>> gt = torch.tensor([[[1, 1, 0, 0]]])  # (1, 1, 4)
        >>> prob = torch.tensor([[[0.1, 0.2, 0.9, 0.6]]])  # foreground and background swapped
        >>> redo_iou(gt, prob).tolist()
        [1.0]
    """
    t, p = check_pair(true_fg, pred_fg, ("true_fg", "pred_fg"))
    t = check_binary(t, "true_fg")
    if p.is_complex():
        raise ValueError(f"pred_fg must be real, got dtype {p.dtype} with shape {tuple(p.shape)}")
    fg = p >= 0.5 if p.dtype != torch.bool else p  # (B, H, W)
    size = t.sum((1, 2))  # (B,)
    inter_fg = (t & fg).sum((1, 2)).double()  # (B,)
    union_fg = (t | fg).sum((1, 2)).double()
    inter_bg = size - inter_fg  # (B,) gt pixels predicted background
    union_bg = (t | ~fg).sum((1, 2)).double()
    score = torch.maximum(inter_fg / union_fg.clamp_min(1), inter_bg / union_bg.clamp_min(1))  # (B,)
    return torch.where(size > 0, score, torch.full_like(score, math.nan))
