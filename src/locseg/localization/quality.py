"""Pixel-wise reconstruction quality Q (paper section 2.3, Algorithm 2 line 4).

Algorithm 2 line 4 writes

    Q = exp(-s * sum_c (x_re_c - x_c)^2 / (2 sigma_1)),

with sigma_1 in the denominator, while section 2.3 writes 2 sigma^2 (and no scope). We read the
algorithm literally by default (divide by ``2 * sigma1``) and offer ``sigma_squared=True`` for the
other reading (divide by ``2 * sigma1 ** 2``). With sigma1 = 0.05 the two differ by a factor of 20
in the exponent, so a value tuned under one reading must be converted (sigma1' = sqrt(sigma1)) for
the other. This is the one differentiable piece of the localization module: the model's loss uses Q,
and gradients flow through it to ``x_re`` (and to ``scope`` when it carries a graph).
"""

from __future__ import annotations

import torch


def quality_map(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor, sigma1: float,
                sigma_squared: bool = False) -> torch.Tensor:
    """Pixel-wise reconstruction quality Q in (0, 1] (Algorithm 2 line 4).

    Args:
        x: (B, C, H, W) input image.
        x_re: (B, C, H, W) reconstruction.
        scope: (B, H, W) remaining-mask s^(k-1) in [0, 1]; pixels with scope 0 get Q = 1.
        sigma1: the constant sigma_1 > 0 of the quality mask.
        sigma_squared: False (default): divide the squared error by ``2 * sigma1`` as Algorithm 2
            writes it; True: divide by ``2 * sigma1 ** 2`` as section 2.3 writes it.

    Returns:
        Q: (B, H, W) ``exp(-scope * sum_c (x_re - x)^2 / denominator)``, differentiable.

    Example:
        >>> x = torch.zeros(1, 3, 2, 2)
        >>> quality_map(x, x, torch.ones(1, 2, 2), 0.05).tolist()
        [[[1.0, 1.0], [1.0, 1.0]]]
    """
    error = scoped_error(x, x_re, scope)  # (B, H, W)
    if sigma1 <= 0:
        raise ValueError(f"sigma1 must be > 0, got {sigma1}")
    denominator = 2.0 * sigma1 ** 2 if sigma_squared else 2.0 * sigma1
    return torch.exp(-error / denominator)  # (B, H, W)


def scoped_error(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor) -> torch.Tensor:
    """``s * sum_c (x_re - x)^2`` (B, H, W), the exponent's numerator of every quality map; checks shapes."""
    if x.dim() != 4 or x_re.shape != x.shape:
        raise ValueError(f"x and x_re must both be (B, C, H, W); got {tuple(x.shape)} and {tuple(x_re.shape)}")
    if scope.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"scope must be (B, H, W) = {(x.shape[0], *x.shape[2:])}, got {tuple(scope.shape)}")
    return scope * (x_re - x).pow(2).sum(dim=1)  # (B, H, W)


def relative_quality(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor, scale: float,
                     floor: float) -> torch.Tensor:
    """Quality normalised by the image's own typical residual (an open choice; docs/method.md).

    ``Q = exp(-s * e / (2 * sigma))`` with ``e = sum_c (x_re - x)^2`` and, per image,
    ``sigma = floor + scale * median_pixels(s * e)`` (detached). The median pixel is a background
    pixel in scenes where the background covers most of the image, so Q is about
    ``exp(-1 / (2 scale))`` there whatever the stage of training, and pixels reconstructed much
    worse than the background (the objects, early on) get Q near 0.

    Args:
        x: (B, C, H, W) input image.
        x_re: (B, C, H, W) reconstruction.
        scope: (B, H, W) remaining-mask in [0, 1].
        scale: multiplier of the median residual (> 0).
        floor: smallest sigma (> 0), reached when the background is reconstructed exactly.

    Returns:
        Q: (B, H, W) in (0, 1], differentiable in ``x_re`` (the normaliser is a constant).

    Example:
        >>> x = torch.zeros(1, 3, 2, 2)
        >>> relative_quality(x, x, torch.ones(1, 2, 2), 4.0, 0.01).tolist()
        [[[1.0, 1.0], [1.0, 1.0]]]
    """
    if scale <= 0 or floor <= 0:
        raise ValueError(f"scale and floor must be > 0, got {scale} and {floor}")
    error = scoped_error(x, x_re, scope)  # (B, H, W)
    sigma = floor + scale * error.detach().flatten(1).median(dim=1).values  # (B,)
    return torch.exp(-error / (2.0 * sigma.view(-1, 1, 1)))  # (B, H, W)
