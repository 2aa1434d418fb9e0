"""Averaging per-image scores over the images where they are defined."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ._tables import ArrayLike, as_tensor


class ScoreSummary(NamedTuple):
    """Mean and spread of per-image scores, with the undefined (NaN) images counted apart."""

    mean: float  # over the defined images; NaN if there are none
    std: float  # population standard deviation (ddof=0) over the defined images; NaN if none
    n_defined: int  # images with a finite score
    n_undefined: int  # images with a NaN score, left out of mean and std


def aggregate(scores: ArrayLike | Sequence[float]) -> ScoreSummary:
    """Summarise per-image scores: NaN images are excluded from the mean and std, and counted.

    Report ``n_undefined`` next to the mean: e.g. Multi-dSprites images without any object have no
    foreground ARI.

    Args:
        scores: per-image scores of any shape (flattened), e.g. the output of ``ari``; concatenate
            per-batch outputs first.

    Returns:
        ``ScoreSummary(mean, std, n_defined, n_undefined)``; unpacks like a tuple.

    Example:
        >>> aggregate([1.0, 0.5, float("nan")])
        ScoreSummary(mean=0.75, std=0.25, n_defined=2, n_undefined=1)
    """
    s = as_tensor(scores, "scores").detach().reshape(-1).to("cpu", torch.float64)  # (M,)
    defined = ~torch.isnan(s)  # (M,)
    kept = s[defined]
    n_defined = int(kept.numel())
    if n_defined == 0:
        return ScoreSummary(math.nan, math.nan, 0, int(s.numel()))
    mean = float(kept.mean())
    std = float(((kept - mean) ** 2).mean().sqrt())
    return ScoreSummary(mean, std, n_defined, int(s.numel()) - n_defined)
