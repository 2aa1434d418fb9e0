"""Adjusted Rand index per image (foreground ARI with ``ignore_index=0``: the Multi-dSprites protocol)."""

from __future__ import annotations

import math

import torch

from ._tables import ArrayLike, table_scores


def _ari_from_table(table: torch.Tensor) -> torch.Tensor:
    """ARI (b,) float64 from contingency tables (b, kt, kp) int64.

    With pair counts x = sum C(n_ij, 2), s_a = sum C(a_i, 2), s_b = sum C(b_j, 2) and m = C(N, 2),
    ARI = (x - s_a s_b / m) / ((s_a + s_b) / 2 - s_a s_b / m) (Hubert & Arabie 1985), computed as
    2 (x m - s_a s_b) / (s_a (m - s_b) + s_b (m - s_a)): the denominator is a sum of non-negative
    terms, zero only when the two partitions are identical. Products are exact int64 while m < 2^31
    (N < 65,536 pixels per image), float64 beyond.
    """
    a = table.sum(2)  # (b, kt)
    b = table.sum(1)  # (b, kp)
    total = a.sum(1)  # (b,)
    x = (table * (table - 1) // 2).sum((1, 2))  # (b,)
    s_a = (a * (a - 1) // 2).sum(1)  # (b,)
    s_b = (b * (b - 1) // 2).sum(1)  # (b,)
    m = total * (total - 1) // 2  # (b,)
    if int(m.max()) >= 2**31:  # int64 products could overflow
        x, s_a, s_b, m = x.double(), s_a.double(), s_b.double(), m.double()
    numerator = (x * m - s_a * s_b).double()  # (b,)
    denominator = (s_a * (m - s_b) + s_b * (m - s_a)).double()  # (b,)
    score = 2.0 * numerator / denominator  # (b,)
    score = torch.where(denominator > 0, score, torch.ones_like(score))  # identical partitions
    return torch.where(total > 0, score, torch.full_like(score, math.nan))


def ari(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None) -> torch.Tensor:
    """Adjusted Rand index of each image, over the pixels whose true label is not ``ignore_index``.

    Equal to ``sklearn.metrics.adjusted_rand_score(true[b][keep], pred[b][keep])`` per image.
    With ``ignore_index=0`` this is the foreground ARI of Multi-dSprites (background pixels left
    out), the number the paper, MONet, IODINE and Slot Attention report.

    Corner cases:
        - Identical partitions (e.g. both labelings put every kept pixel in one cluster, the usual
          case for a one-object image with ``ignore_index=0``): 1.0, as scikit-learn. DeepMind's
          reference ``adjusted_rand_index`` (multi_object_datasets) returns NaN there, 0/0.
        - One predicted cluster for several true clusters (or the reverse): 0.0.
        - No pixel kept (every true label is ``ignore_index``): NaN.

    Args:
        true: (B, H, W) integer true labels (torch or numpy, any integer dtype, any values).
        pred: (B, H, W) integer predicted labels, e.g. from ``masks_to_labels``.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.

    Returns:
        (B,) float64 ARI per image, in [-1, 1] (NaN where undefined).

    Raises:
        ValueError: if the shapes are not the same (B, H, W) or the labels are not integers.

    Example:
        >>> import torch
        >>> true = torch.tensor([[[1, 1, 2, 2]], [[1, 1, 2, 2]], [[0, 0, 0, 0]]])  # (3, 1, 4)
        >>> pred = torch.tensor([[[3, 3, 9, 9]], [[3, 9, 3, 9]], [[1, 1, 2, 2]]])
        >>> ari(true, pred, ignore_index=0).tolist()
        [1.0, -0.5, nan]
    """
    return table_scores(true, pred, ignore_index, {"ari": _ari_from_table})["ari"]
