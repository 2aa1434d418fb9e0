"""Segment a user's own images with a trained model, at each image's own resolution.

:func:`segment_to_npz` streams: it holds one batch of model-sized images and one full-size image's
masks at a time, whatever the number of inputs, and writes the ``.npz`` under a temporary name
that is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from .inference import predict, resize_masks
from .io import atomic_file
from .types import mask_locations

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class InputError(ValueError):
    """An input path or array that cannot be segmented (missing, unreadable, wrong shape)."""


def to_rgb(im: Image.Image, name: str = "image") -> np.ndarray:
    """Any PIL image as (H, W, 3) uint8 RGB, upright.

    The EXIF orientation is applied; 16-bit greyscale (``I;16*``, and ``I`` within 0..65535) is
    scaled to 8 bits (not clipped); palette and alpha images lose their alpha; CMYK, YCbCr, LAB
    and bilevel go through Pillow's conversion.

    Raises:
        InputError: a mode with no faithful RGB version (floating point, ``I`` outside 0..65535).
    """
    im = ImageOps.exif_transpose(im)
    if im.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(im).astype(np.int64)  # (H, W)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(f"{name}: 32-bit integer image with values outside 0..65535; save it as 8 or 16 bit")
        grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)  # (H, W) 16 -> 8 bit, rounded
        return np.repeat(grey[..., None], 3, axis=-1)  # (H, W, 3)
    if im.mode == "F":
        raise InputError(f"{name}: floating-point image (mode F) is not supported; save it as 8 or 16 bit")
    if im.mode in ("P", "PA") and ("transparency" in im.info or im.mode == "PA"):
        im = im.convert("RGBA")  # Pillow's path for palettes with transparency
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except ValueError:
        raise InputError(f"{name}: cannot convert image mode {im.mode} to RGB") from None


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return to_rgb(im, str(path))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def list_inputs(path: str | Path) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """The images of an image file, a folder of images (or an image-folder dataset's ``images/``),
    or a .npy array (N, H, W, 3) / (H, W, 3) uint8, as (name, loader) pairs: nothing is decoded yet.

    Raises:
        InputError: a missing path, an empty folder, a .npy of the wrong shape or type.
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
        return [(p.name, lambda p=p: _read_image(p)) for p in files]
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read array {path}: {e}") from None
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0:
            raise InputError(f"{path}: expected a uint8 array of shape (N, H, W, 3), got {arr.shape} {arr.dtype}")
        return [(f"{path.stem}[{i}]", lambda i=i: np.array(arr[i])) for i in range(len(arr))]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [(path.name, lambda: _read_image(path))]
    raise InputError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)}), folder or .npy array")


def read_images(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """Read every image of :func:`list_inputs` into memory (for small inputs; see :func:`segment_to_npz`).

    Returns:
        the images as (H, W, 3) uint8 arrays (sizes may differ) and a name for each.
    """
    inputs = list_inputs(path)
    return [load() for _, load in inputs], [name for name, _ in inputs]


def _full_size(masks: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Model-sized masks (K, s, s) resized to (K, H, W), renormalised; labels, locations, areas."""
    m = resize_masks(torch.from_numpy(masks)[None], height, width)[0]  # (K, H, W)
    return {
        "masks": m.numpy().astype(np.float32),
        "labels": m.argmax(0).numpy().astype(np.uint8),
        "locations": mask_locations(m[None])[0].numpy().astype(np.float32),
        "areas": m.sum(dim=(1, 2)).numpy().astype(np.float32),
    }


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
    pred = predict(model, images, device, size, batch_size, seed)  # the same path as evaluation
    return [_full_size(masks, *image.shape[:2]) for image, masks in zip(images, pred["masks"], strict=True)]


def _write_npy(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


class _Skipper:
    """Reports a bad input on the log and skips it, or raises it with ``strict``."""

    def __init__(self, strict: bool):
        self.strict, self.skipped = strict, []

    def load(self, name: str, load: Callable[[], np.ndarray]) -> np.ndarray | None:
        try:
            return load()
        except InputError as e:
            if self.strict:
                raise
            log.warning("skipped %s: %s", name, e)
            self.skipped.append(name)
            return None


def segment_to_npz(model: nn.Module, inputs: str | Path, out: str | Path, size: int,
                   device: str | torch.device = "cpu", batch_size: int = 32, seed: int = 0,
                   png: str | Path | None = None, strict: bool = False, progress: bool = True) -> dict[str, Any]:
    """Segment every image of ``inputs`` (see :func:`list_inputs`) and write ``out`` (.npz), streaming.

    The file holds ``names`` (N,), ``locations`` (N, K, 2) normalised (y, x) mask centroids,
    ``areas`` (N, K) soft areas in pixels, and ``labels`` (N, H, W) uint8 / ``masks`` (N, K, H, W)
    float32 when every image has the same size, else ``labels_<i>`` / ``masks_<i>`` per image i of
    ``names``. An unreadable image is logged and skipped (``strict``: raised). With ``png``, one
    overlay per image is written there (see :func:`locseg.viz.segment_overlays`).

    Returns:
        dict with ``out``, ``written`` (images), ``skipped`` (names) and ``layout`` ("stacked" | "per_image").

    Raises:
        InputError: bad ``inputs``, ``out`` not a ``.npz`` file name, no readable image, or (with
            ``strict``) the first unreadable one. Nothing is left behind.
    """
    from tqdm.auto import tqdm

    from . import viz

    out = Path(out)
    if out.is_dir() or out.suffix.lower() != ".npz":
        raise InputError(f"--out {out}: give the path of the .npz file to write (ending in .npz), not a folder")
    sources = list_inputs(inputs)
    skipper = _Skipper(strict or len(sources) == 1)  # a single input's error is the error
    shapes = {}  # name -> (H, W): a first pass decodes each image once, holding one at a time
    for name, load in tqdm(sources, desc="read", unit="img", disable=None if progress else True):
        image = skipper.load(name, load)
        if image is not None:
            shapes[name] = image.shape[:2]
    sources = [(name, load) for name, load in sources if name in shapes]
    if not sources:
        raise InputError(f"no readable image in {inputs}")
    stacked = len(set(shapes.values())) == 1
    created_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(out) as npz:  # out appears complete, or not at all
            tmp = npz.parent  # a scratch folder private to this write: labels.npy, overlays
            num_slots, locations, areas = None, [], []
            labels_mm = masks_member = None
            zf = zipfile.ZipFile(npz, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
            bar = tqdm(total=len(sources), desc="segment", unit="img", disable=None if progress else True)
            with zf, bar, contextlib.ExitStack() as members:  # members close before the zip file does
                for start in range(0, len(sources), batch_size):
                    chunk = sources[start:start + batch_size]
                    pred = predict(model, [load() for _, load in chunk], device, size, batch_size, seed)
                    for j, ((name, load), masks) in enumerate(zip(chunk, pred["masks"], strict=True)):
                        i = start + j
                        result = _full_size(masks, *shapes[name])
                        if num_slots is None and stacked:
                            num_slots = len(masks)
                            shape = (len(sources), num_slots, *shapes[name])
                            masks_member = members.enter_context(zf.open("masks.npy", "w", force_zip64=True))
                            np.lib.format.write_array_header_2_0(masks_member, {
                                "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                                "shape": shape})
                            labels_mm = np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.uint8,
                                                                  shape=(len(sources), *shapes[name]))
                        if stacked:
                            masks_member.write(result["masks"].reshape(-1).view(np.uint8))  # rows of masks.npy
                            labels_mm[i] = result["labels"]
                        else:
                            _write_npy(zf, f"labels_{i}", result["labels"])
                            _write_npy(zf, f"masks_{i}", result["masks"])
                        locations.append(result["locations"])
                        areas.append(result["areas"])
                        if png is not None:
                            viz.segment_overlays([load()], [result], [name], tmp / "png", start=i)
                        bar.update(1)
                if stacked:
                    masks_member.close()
                    labels_mm.flush()
                    _write_npy(zf, "labels", labels_mm)
                    del labels_mm
                _write_npy(zf, "locations", np.stack(locations))
                _write_npy(zf, "areas", np.stack(areas))
                _write_npy(zf, "names", np.asarray([name for name, _ in sources]))
            if png is not None:
                Path(png).mkdir(parents=True, exist_ok=True)
                for p in sorted((tmp / "png").iterdir()):
                    shutil.move(str(p), Path(png) / p.name)
    except BaseException:
        if created_parent:
            with contextlib.suppress(OSError):
                out.parent.rmdir()
        raise
    return {"out": out, "written": len(sources), "skipped": skipper.skipped,
            "layout": "stacked" if stacked else "per_image"}
