"""Segment a user's own images with a trained model, at each image's own resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from .types import mask_locations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class InputError(ValueError):
    """An input path or array that cannot be segmented (missing, unreadable, wrong shape)."""


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def read_images(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """Read an image file, a folder of images (or an image-folder dataset's ``images/``), or a .npy
    array (N, H, W, 3) / (H, W, 3) uint8.

    Returns:
        the images as (H, W, 3) uint8 arrays (sizes may differ) and a name for each.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        if (path / "images").is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            path = path / "images"  # an image-folder dataset (locseg.data.image_folder): its images
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return [_read_image(p) for p in files], [p.name for p in files]
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read array {path}: {e}") from None
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0:
            raise InputError(f"{path}: expected a uint8 array of shape (N, H, W, 3), got {arr.shape} {arr.dtype}")
        return [np.asarray(a) for a in arr], [f"{path.stem}[{i}]" for i in range(len(arr))]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [_read_image(path)], [path.name]
    raise InputError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)}), folder or .npy array")


@torch.no_grad()
def segment_images(model: nn.Module, images: list[np.ndarray], size: int, device: str | torch.device = "cpu",
                   batch_size: int = 32, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Segment images of any size: each is resized to the model's ``size``, and its masks are
    resized back to its own resolution.

    Returns:
        one dict per image with ``masks`` (K, H, W) float32 summing to one, ``labels`` (H, W)
        uint8 (argmax slot, 0 = background slot), ``locations`` (K, 2) normalised (y, x) centres
        and ``areas`` (K,) mask areas in pixels, all at that image's resolution.
    """
    from .train import predict  # the same inference path as evaluation

    resized = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])
    pred = predict(model, resized, device, size, batch_size, seed)
    results = []
    for image, masks in zip(images, pred["masks"], strict=True):
        H, W = image.shape[:2]
        m = torch.from_numpy(masks)[None]  # (1, K, s, s)
        m = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)[0].clamp_min(0)  # (K, H, W)
        m = m / m.sum(0, keepdim=True).clamp_min(1e-8)  # (K, H, W) renormalised after resampling
        results.append({
            "masks": m.numpy().astype(np.float32),
            "labels": m.argmax(0).numpy().astype(np.uint8),
            "locations": mask_locations(m[None])[0].numpy().astype(np.float32),
            "areas": m.sum(dim=(1, 2)).numpy().astype(np.float32),
        })
    return results


def save_npz(results: list[dict[str, np.ndarray]], names: list[str], out: str | Path) -> dict[str, Any]:
    """Write results to ``out`` (.npz). Same-size inputs give stacked ``labels`` (N, H, W) and
    ``masks`` (N, K, H, W); mixed sizes give ``labels_<i>`` / ``masks_<i>`` per image. ``locations``
    (N, K, 2), ``areas`` (N, K) and ``names`` (N,) are always stacked."""
    arrays: dict[str, Any] = {
        "locations": np.stack([r["locations"] for r in results]),
        "areas": np.stack([r["areas"] for r in results]),
        "names": np.asarray(names),
    }
    if len({r["labels"].shape for r in results}) == 1:
        arrays["labels"] = np.stack([r["labels"] for r in results])
        arrays["masks"] = np.stack([r["masks"] for r in results])
    else:
        for i, r in enumerate(results):
            arrays[f"labels_{i}"] = r["labels"]
            arrays[f"masks_{i}"] = r["masks"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    return arrays
