"""From soft masks to label maps, and every label-map score from one set of contingency tables."""

from __future__ import annotations

from functools import partial

import torch

from ._tables import ArrayLike, as_tensor, table_scores
from .covering import _covering_from_table
from .mutual_info import _ami_from_table
from .rand_index import _ari_from_table


def masks_to_labels(masks: ArrayLike) -> torch.Tensor:
    """Hard label maps from soft masks: the argmax over the K slots.

    Args:
        masks: (B, K, H, W) or (B, K, 1, H, W) masks (torch or numpy), e.g. ``ModelOutput.masks``.

    Returns:
        (B, H, W) int64 labels in [0, K); ties go to the lowest slot index.

    Raises:
        ValueError: for any other shape, or K = 0.

    Example:
        >>> import torch
        >>> masks = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # (1, 2, 1, 2): K = 2, H = 1, W = 2
        >>> masks_to_labels(masks).tolist()
        [[[0, 1]]]
    """
    m = as_tensor(masks, "masks")
    if m.dim() == 5 and m.shape[2] == 1:
        m = m[:, :, 0]  # (B, K, H, W)
    if m.dim() != 4 or m.shape[1] == 0:
        raise ValueError(f"masks must have shape (B, K, H, W) or (B, K, 1, H, W) with K >= 1, got shape "
                         f"{tuple(m.shape)}")
    if m.dtype == torch.bool:
        m = m.to(torch.uint8)
    return torch.max(m, dim=1).indices  # (B, H, W); on CPU several times faster than argmax over dim 1


def label_scores(true: ArrayLike, pred: ArrayLike, ignore_index: int | None = None) -> dict[str, torch.Tensor]:
    """ARI, AMI, mSC and SC of each image from one set of contingency tables.

    The same numbers as ``ari``, ``ami`` and ``segmentation_covering`` (weighted False and True)
    with the same ``ignore_index``, for about the price of one of them.

    Args:
        true: (B, H, W) integer true labels.
        pred: (B, H, W) integer predicted labels.
        ignore_index: true label whose pixels are left out, or None to keep every pixel.

    Returns:
        ``{"ari", "ami", "msc", "sc"}``, each (B,) float64.

    Example:
        >>> true = [[[0, 1, 1, 2]]]  # nested lists work too: (1, 1, 4)
        >>> scores = label_scores(true, [[[0, 3, 3, 4]]], ignore_index=0)
        >>> {name: value.tolist() for name, value in scores.items()}
        {'ari': [1.0], 'ami': [1.0], 'msc': [1.0], 'sc': [1.0]}
    """
    fns = {
        "ari": _ari_from_table,
        "ami": _ami_from_table,
        "msc": partial(_covering_from_table, weighted=False),
        "sc": partial(_covering_from_table, weighted=True),
    }
    return table_scores(true, pred, ignore_index, fns)
