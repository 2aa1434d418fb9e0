"""Segmentation covering per image: mSC and SC of GENESIS."""

from __future__ import annotations

import math
from functools import partial

import torch

from ._tables import ArrayLike, table_scores


def _covering_from_table(table: torch.Tensor, weighted: bool) -> torch.Tensor:
    """Segmentation covering (b,) float64 of the true segments by the predicted ones."""
    n = table.double()  # (b, kt, kp)
    a = n.sum(2)  # (b, kt) true segment sizes
    b = n.sum(1)  # (b, kp) predicted segment sizes (kept pixels only)
    union = a.unsqueeze(2) + b.unsqueeze(1) - n  # (b, kt, kp)
    overlap = torch.where(union > 0, n / union.clamp_min(1), torch.zeros_like(n))  # (b, kt, kp) IoU
    best = overlap.amax(2)  # (b, kt)
    present = a > 0  # (b, kt)
    if weighted:
        score = (a * best).sum(1) / a.sum(1)  # (b,)
    else:
        score = (best * present).sum(1) / present.sum(1)  # (b,)
    return torch.where(present.any(1), score, torch.full_like(score, math.nan))


def segmentation_covering(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None,
                          weighted: bool = False) -> torch.Tensor:
    """Segmentation covering of the true segments by the predicted ones, per image (GENESIS).

    For each true segment R, the best IoU over predicted segments R'; mean segmentation covering
    (mSC, ``weighted=False``) is the plain mean over true segments, segmentation covering (SC,
    ``weighted=True``) the mean weighted by |R| (Engelcke et al. 2020, after Arbelaez et al. 2011).
    Pixels whose true label is ``ignore_index`` are removed from the true *and* the predicted
    segments before any IoU is taken.

    Corner cases: no pixel kept gives NaN; a predicted segment lying entirely in ignored pixels
    does not exist. The score is not symmetric: it asks how well ``pred`` covers ``true``.

    Args:
        true: (B, H, W) integer true labels (torch or numpy, any integer dtype, any values).
        pred: (B, H, W) integer predicted labels.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.
        weighted: False for mSC, True for SC.

    Returns:
        (B,) float64 covering per image, in [0, 1] (NaN where undefined).

    Raises:
        ValueError: if the shapes are not the same (B, H, W) or the labels are not integers.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 1, 2]]])  # (1, 1, 4): segments of 3 and 1 pixels
        >>> pred = torch.tensor([[[0, 0, 0, 0]]])  # one segment: IoUs 3/4 and 1/4
        >>> segmentation_covering(true, pred).tolist()  # mSC = (3/4 + 1/4) / 2
        [0.5]
        >>> segmentation_covering(true, pred, weighted=True).tolist()  # SC = (3 * 3/4 + 1/4) / 4
        [0.625]
    """
    fn = partial(_covering_from_table, weighted=weighted)
    return table_scores(true, pred, ignore_index, {"covering": fn})["covering"]
