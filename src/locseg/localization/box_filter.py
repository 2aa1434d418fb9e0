"""The non-trainable all-ones box filter over s * Q and its argmax (section 2.3, Algorithm 2 lines 6-7).

Section 2.3 convolves Q with a kernel whose weights are all 1, stride 1 and SAME (zero) padding,
then takes the location of the highest output. The sum over a box is read off an integral image
(cumulative sums along both axes, four corners per box), so the cost is linear in the number of
pixels and independent of the box size. Sums are accumulated in float64 (float32 on MPS, which has
no float64), which keeps them equal to a direct convolution to rounding and keeps exact ties exact
where the sums are exactly representable (e.g. flat regions of Q = 1).
"""

from __future__ import annotations

import torch


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def box_sum(a: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of ``a`` over a ``size`` x ``size`` box around every pixel (all-ones kernel, SAME zero padding).

    Equals ``conv2d(a[:, None], ones(1, 1, size, size), padding="same")[:, 0]`` up to rounding, in
    O(B * H * W) time for any ``size`` (an integral image). A box larger than the image is fine.

    Args:
        a: (B, H, W) floating-point map, e.g. ``scope * Q``.
        size: side of the box, >= 1 (the paper's kernel is odd; an even size puts the extra row and
            column after the centre, as ``conv2d(padding="same")`` does).

    Returns:
        (B, H, W) box sums in ``a.dtype``.

    Example:
        >>> box_sum(torch.ones(1, 3, 3), 3).tolist()
        [[[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]]
    """
    return _box_sum_acc(a, size).to(a.dtype)  # (B, H, W)


def _box_sum_acc(a: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`box_sum` in the accumulation dtype (float64 except on MPS)."""
    if a.dim() != 3:
        raise ValueError(f"box_sum expects a (B, H, W) map, got shape {tuple(a.shape)}")
    if size < 1:
        raise ValueError(f"box size must be >= 1, got {size}")
    B, H, W = a.shape
    # the window at index i covers [i - left, i + right], where conv2d(padding="same") puts it
    left = (size - 1) // 2
    # integral image with a zero first row and column: table[k, l] = sum of a[:k - left, :l - left]
    table = a.new_zeros(B, H + size, W + size, dtype=_accumulation_dtype(a.device))  # (B, H + size, W + size)
    table[:, left + 1:left + 1 + H, left + 1:left + 1 + W] = a
    table.cumsum_(2).cumsum_(1)
    return (table[:, size:, size:] - table[:, :H, size:]
            - table[:, size:, :W] + table[:, :H, :W])  # (B, H, W) inclusion-exclusion of four corners


def box_argmax(scores: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image (row, col) of the maximum of the box-filtered map (Algorithm 2 lines 6-7).

    Algorithm 2 line 7 writes ``argmax(Q)``, but line 6 has just computed the area quality
    Q' = box(s * Q) and section 2.3 takes "the location with the highest output" of the convolution,
    so the argmax is taken over the box sums Q'.

    Ties are broken by the first maximum in row-major order (smallest row, then smallest column), as
    ``torch.argmax`` returns the first maximal index. Box sums are compared in float64, so exact ties
    such as a flat plateau of ones stay exact.

    Args:
        scores: (B, H, W) map, e.g. ``scope * Q``.
        size: side of the all-ones box, >= 1.

    Returns:
        (B, 2) long tensor of (row, col) per image.

    Example:
        >>> s = torch.zeros(1, 5, 5); s[0, 3, 1] = 1.0
        >>> box_argmax(s, 1).tolist()
        [[3, 1]]
    """
    W = scores.shape[-1]
    flat = _box_sum_acc(scores, size).flatten(1).argmax(dim=1)  # (B,)
    return torch.stack([flat // W, flat % W], dim=1)  # (B, 2)
