"""How far predicted object centres are from the true ones (Hungarian matching per image)."""

from __future__ import annotations

import numpy as np


def location_error(true_centres: np.ndarray, visible: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """Sum of distances between true object centres and their matched predicted slot centres.

    Args:
        true_centres: (B, M, 2) normalised (y, x), NaN for absent objects.
        visible: (B, M) bool; invisible objects (and NaN centres) are ignored.
        pred: (B, K', 2) predicted centres of the object slots (background slot excluded).

    Returns:
        (sum of distances over matched objects, number of matched objects). Matching is the
        Hungarian assignment minimising total distance, per image; an image without a visible
        object adds nothing.

    Example:
        >>> import numpy as np
        >>> true = np.array([[[0.2, 0.2], [0.8, 0.8]]])  # (1, 2, 2)
        >>> pred = np.array([[[0.8, 0.8], [0.2, 0.5]]])  # (1, 2, 2)
        >>> total, count = location_error(true, np.array([[True, True]]), pred)
        >>> round(total, 6), count
        (0.3, 2)
    """
    from scipy.optimize import linear_sum_assignment

    total, count = 0.0, 0
    for t, v, p in zip(true_centres, visible, pred, strict=True):
        t = t[v & np.isfinite(t).all(-1)]  # (M', 2)
        if len(t) == 0:
            continue
        dist = np.linalg.norm(t[:, None, :] - p[None, :, :], axis=-1)  # (M', K')
        rows, cols = linear_sum_assignment(dist)
        total += float(dist[rows, cols].sum())
        count += len(rows)
    return total, count


def matched_locations(true_centres: np.ndarray, visible: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The predicted centre matched to each true object, by the same matching as :func:`location_error`.

    Args:
        true_centres: (B, M, 2) normalised (y, x), NaN for absent objects.
        visible: (B, M) bool; invisible objects (and NaN centres) get no match.
        pred: (B, K', 2) predicted centres of the object slots (background slot excluded).

    Returns:
        (B, M, 2) float64: for each visible object the centre of the slot the per-image Hungarian
        assignment (minimum total distance) gives it; NaN for objects that are not visible, and for
        visible objects left over when there are fewer slots than objects.

    Example:
        >>> import numpy as np
        >>> true = np.array([[[0.2, 0.2], [0.8, 0.8], [0.5, 0.5]]])  # (1, 3, 2)
        >>> pred = np.array([[[0.8, 0.7], [0.2, 0.3]]])  # (1, 2, 2)
        >>> matched_locations(true, np.array([[True, True, False]]), pred).tolist()
        [[[0.2, 0.3], [0.8, 0.7], [nan, nan]]]
    """
    from scipy.optimize import linear_sum_assignment

    out = np.full(true_centres.shape, np.nan)  # (B, M, 2)
    for b, (t, v, p) in enumerate(zip(true_centres, visible, pred, strict=True)):
        objects = np.flatnonzero(v & np.isfinite(t).all(-1))  # (M',)
        if len(objects) == 0:
            continue
        dist = np.linalg.norm(t[objects, None, :] - p[None, :, :], axis=-1)  # (M', K')
        rows, cols = linear_sum_assignment(dist)
        out[b, objects[rows]] = p[cols]
    return out
