"""The Butterworth window G around the best-reconstructed location (section 2.3).

    G(r, n, f) = 1 / sqrt(1 + (r / f)^(2n)),    G_ij = G(|i - i_c|, n, f) * G(|j - j_c|, n, f)

The window is separable (an outer product of two 1-d profiles), peaks at exactly 1 on the centre
pixel and decays with the distance in pixels; ``f`` is the distance at which each 1-d profile is
1/sqrt(2).
"""

from __future__ import annotations

import math

import torch


def butterworth_1d(r: torch.Tensor, f: float, n: float) -> torch.Tensor:
    """The Butterworth profile G(r, n, f) = 1 / sqrt(1 + (r / f)^(2n)).

    Args:
        r: distances (any shape); the profile is symmetric, |r| is used.
        f: cut-off distance > 0 (G(f) = 1/sqrt(2)).
        n: order > 0 (larger n: sharper edge).

    Returns:
        G with the shape and dtype of ``r``, in (0, 1], equal to 1 at r = 0.

    Example:
        >>> round(butterworth_1d(torch.tensor(8.0), 8.0, 2.0).item(), 4)
        0.7071
    """
    return torch.rsqrt(1.0 + (r.abs() / f) ** (2.0 * n))  # same shape as r


def butterworth_window(centre: torch.Tensor, H: int, W: int, f: float, n: float,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Separable Butterworth window G(|i - i_c|) * G(|j - j_c|) centred on each image's ``centre``.

    Args:
        centre: (B, 2) integer (row, col) centres, e.g. from :func:`box_argmax`.
        H: image height.
        W: image width.
        f: cut-off distance in pixels.
        n: order.
        dtype: floating dtype of the window.

    Returns:
        G: (B, H, W) window in (0, 1], exactly 1 at the centre pixel.
    """
    rows = torch.arange(H, device=centre.device, dtype=dtype)  # (H,)
    cols = torch.arange(W, device=centre.device, dtype=dtype)  # (W,)
    centre = centre.to(dtype)  # (B, 2)
    g_rows = butterworth_1d(rows - centre[:, :1], f, n)  # (B, H)
    g_cols = butterworth_1d(cols - centre[:, 1:], f, n)  # (B, W)
    return g_rows.unsqueeze(2) * g_cols.unsqueeze(1)  # (B, H, W)


def butterworth_radius(f: float, n: float, threshold: float, dtype: torch.dtype = torch.float32,
                       limit: int | None = None) -> int | None:
    """Largest integer distance r with G(r) > ``threshold`` (None when there is no useful bound).

    Since G(0) = 1 and both 1-d factors are at most 1, a pixel with ``window > threshold`` lies within
    ``radius`` of the centre along both axes, so the hard window 1[G > threshold] fits in a
    (2 * radius + 1)^2 box. The radius is found by evaluating :func:`butterworth_1d` in ``dtype``,
    the dtype of the window, so it agrees with the window's own rounding.

    Args:
        f: cut-off distance in pixels.
        n: order.
        threshold: the hard-window threshold; <= 0 means no bound (returns None), >= 1 gives 0.
        dtype: dtype in which the window is evaluated.
        limit: return None when the bound on the radius is at least this (e.g. the image side),
            where it would not help (default 1e7).

    Returns:
        The radius in pixels, or None when G > threshold everywhere or the bound reaches ``limit``.
    """
    if threshold <= 0:
        return None
    if threshold >= 1:
        return 0
    # G(r) > threshold <=> r < bound = f * (1 / threshold^2 - 1)^(1 / 2n), computed in logs (no overflow)
    log_bound = math.log(f) + math.log(1.0 / threshold ** 2 - 1.0) / (2.0 * n)
    cap = 1e7 if limit is None else limit
    if cap <= 0 or log_bound >= math.log(cap):
        return None
    bound = math.exp(log_bound)
    candidates = torch.arange(math.floor(bound) + 3, dtype=dtype)  # (R + 3,)
    inside = butterworth_1d(candidates, f, n) > threshold  # (R + 3,)
    return int(inside.nonzero().max())
