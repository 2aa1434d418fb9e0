"""The one image resize of locseg: torch bilinear, antialiased when shrinking.

Model inputs (:func:`locseg.inference.to_tensor`, so training, ``evaluate`` and ``segment``) and
the image-folder dataset cache (:mod:`locseg.data.image_folder`) both resize with
:func:`resize_images`, so an image looks the same to a model whichever path brought it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, size, size) (antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, 3) uint8 image resized by :func:`resize_images` to (size, size, 3) uint8 (rounded).

    Example:
        >>> image = np.zeros((4, 8, 3), dtype=np.uint8)
        >>> image[:, 4:] = 255  # left half black, right half white
        >>> resize_uint8(image, 4)[..., 0].tolist()  # the antialiasing filter blends across the edge
        [[0, 32, 223, 255], [0, 32, 223, 255], [0, 32, 223, 255], [0, 32, 223, 255]]
    """
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]  # (1, 3, H, W) a writable copy
    y = resize_images(x.float().div_(255.0), size)[0]  # (3, size, size) in [0, 1]
    return y.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8).permute(1, 2, 0).numpy()  # (size, size, 3)
