"""Saliency priors: foreground masks that ignore the image, the floor any Flowers score must beat.

Flowers photographs are framed on the flower, so "the centre is the object" is a strong prior
(ReDO's and most unsupervised saliency papers' reference point). Both functions return float
foreground masks in [0, 1]; a baseline model turns one into the two-slot masks
``(background = 1 - fg, foreground = fg)`` of the output contract.
"""

from __future__ import annotations

import torch

from ..types import pixel_centres


def whole_image_mask(B: int, H: int, W: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Every pixel foreground.

    Under ReDO's IoU (the better of the two assignments) this scores the ground truth's foreground
    fraction, |gt| / (H W), per image.

    Returns:
        (B, H, W) float32 ones.

    >>> whole_image_mask(2, 3, 4).shape
    torch.Size([2, 3, 4])
    """
    return torch.ones(B, H, W, device=device)


def centred_ellipse_mask(B: int, H: int, W: int, fraction: float = 0.75,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """A filled ellipse centred on the image, axis-aligned, as the foreground.

    Its semi-axes are ``fraction * H / 2`` and ``fraction * W / 2`` (``fraction = 1``: the ellipse
    inscribed in the image, covering pi/4 of it; the area is ``pi / 4 * fraction**2`` of the image).
    Pixel (i, j) sits at ((i + 0.5) / H, (j + 0.5) / W) (``locseg.types.mask_locations``) and is
    inside when ``((y - 0.5) / (fraction / 2))**2 + ((x - 0.5) / (fraction / 2))**2 <= 1``.

    Args:
        B, H, W: output shape.
        fraction: size of the ellipse's axes relative to the image's sides, in (0, 1].

    Returns:
        (B, H, W) float32 binary mask.

    Raises:
        ValueError: ``fraction`` outside (0, 1].

    >>> centred_ellipse_mask(1, 5, 5, fraction=0.5)[0].int().tolist()
    [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y = pixel_centres(H, device) - 0.5  # (H,)
    x = pixel_centres(W, device) - 0.5  # (W,)
    r = (y[:, None] ** 2 + x[None, :] ** 2) / (fraction / 2) ** 2  # (H, W)
    return (r <= 1.0).float().expand(B, H, W).contiguous()  # (B, H, W)
