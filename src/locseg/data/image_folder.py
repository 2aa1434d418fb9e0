"""A folder of your own images, with optional masks, as a dataset.

Layout (either form)::

    DIR/images/NAME.png|jpg|...          DIR/train/images/...   DIR/test/images/...
    DIR/masks/NAME.png      (optional)   DIR/train/masks/...    DIR/test/masks/...   (optional)

Images may have any size and any PIL-readable format; each is squashed (no crop, so that every
pixel keeps a label) to ``size`` x ``size`` by :func:`locseg.images.resize_uint8` (torch bilinear,
antialiased when shrinking), the same resize ``locseg segment`` and ``evaluate`` apply. A mask
shares its image's stem (``masks/cat.png`` for ``images/cat.jpg``) and size; it is resized with
nearest-neighbour. Mask values: in a single-channel (L, P, I) mask 0 is background and every other
value one object; in an RGB mask black is background and every other
colour one object; a JPEG mask is binarised at 128 (lossy compression invents values). Objects are
numbered 1..n by increasing value.

With the flat form (``DIR/images``) there is no held-out set: ``train`` and ``test`` hold the same
images, as unsupervised segmentation is usually scored on the images it was trained on (the test
files are hard links, so this costs no disk). With ``DIR/train`` and ``DIR/test`` each split is its
own folder.

:func:`convert` writes the layout of :mod:`locseg.data` (``images``, ``labels`` and ``centres`` /
``visibility`` of each object when there are masks, ``name``); :func:`prepare` does it once into
``DIR/locseg_cache/`` (refreshed when files are added, removed or changed), so ``--data DIR`` works.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from locseg.data import DataError, write_split
from locseg.data.io import atomic_output_dir, label_statistics
from locseg.images import resize_uint8

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_SIZE = 128
CACHE_DIR = "locseg_cache"
CONVERTER_VERSION = 2  # 2: images resized by locseg.images.resize_uint8 (1: PIL bilinear)
MAX_OBJECTS = 255  # labels are uint8


def split_folders(root: str | Path) -> dict[str, Path]:
    """{split: folder holding ``images/`` (and maybe ``masks/``)}; empty if ``root`` has neither form."""
    root = Path(root)
    if (root / "images").is_dir():
        return {"train": root, "test": root}
    return {s: root / s for s in ("train", "val", "test") if (root / s / "images").is_dir()}


def is_image_folder(root: str | Path) -> bool:
    """Whether ``root`` has the image-folder layout (``images/`` or ``train/images/``)."""
    return "train" in split_folders(root)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path} (corrupt or truncated?): {e}") from None


def mask_values(mask: Image.Image, jpeg: bool = False) -> np.ndarray:
    """One integer per pixel: 0 background, another value per object (see the module docstring).

    Args:
        mask: a PIL mask image.
        jpeg: binarise at 128 (for lossy masks).

    Returns:
        (H, W) int64.
    """
    if jpeg:
        return (np.asarray(mask.convert("L")) >= 128).astype(np.int64)
    if mask.mode in ("L", "P", "I", "I;16", "1"):
        return np.asarray(mask).astype(np.int64)
    rgb = np.asarray(mask.convert("RGB")).astype(np.int64)  # (H, W, 3)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # black -> 0


def relabel(values: np.ndarray) -> np.ndarray:
    """Map 0 to 0 and the other distinct values to 1..n in increasing order.

    >>> relabel(np.array([[0, 7, 7], [255, 0, 7]])).tolist()
    [[0, 1, 1], [2, 0, 1]]
    """
    uniq = np.unique(values)
    uniq = uniq[uniq != 0]
    if len(uniq) > MAX_OBJECTS:
        raise DataError(f"a mask has {len(uniq)} distinct object values (at most {MAX_OBJECTS})")
    return np.where(values == 0, 0, np.searchsorted(uniq, values) + 1).astype(np.int64)  # (H, W)


def load_example(image_path: Path, mask_path: Path | None, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """An image (size, size, 3) uint8 and its mask (size, size) uint8 labels (or None)."""
    image = _open(image_path).convert("RGB")
    out = resize_uint8(np.asarray(image, dtype=np.uint8), size)  # (size, size, 3)
    if mask_path is None:
        return out, None
    mask = _open(mask_path)
    if mask.size != image.size:
        raise DataError(f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image is "
                        f"{image.size[0]}x{image.size[1]}")
    labels = relabel(mask_values(mask, jpeg=mask_path.suffix.lower() in (".jpg", ".jpeg")))  # (H, W)
    resized = Image.fromarray(labels.astype(np.uint8)).resize((size, size), Image.NEAREST)
    return out, np.asarray(resized, dtype=np.uint8)


def _pairs(folder: Path) -> tuple[list[Path], list[Path] | None]:
    images = _files(folder / "images")
    if not images:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder / 'images'}")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise DataError(f"{folder / 'images'} holds several files with the same name stem")
    if not (folder / "masks").is_dir():
        return images, None
    by_stem = {p.stem: p for p in _files(folder / "masks")}
    missing = [p.name for p in images if p.stem not in by_stem]
    if missing:
        raise DataError(f"missing mask for {missing[0]} in {folder / 'masks'} ({len(missing)} image(s) without one)")
    return images, [by_stem[p.stem] for p in images]


def convert(root: str | Path, out_dir: str | Path, size: int = DEFAULT_SIZE, overwrite: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Convert an image folder into a dataset directory (written atomically).

    Args:
        root: image folder (see the module docstring for the layout).
        out_dir: dataset directory to create.
        size: side every image is resized to (use the config's ``data.image_size``).
        overwrite: replace an existing non-empty ``out_dir``.
        progress: show a tqdm bar per split.

    Returns:
        dict with ``out_dir``, ``counts`` ({split: n}), ``masks`` (bool) and ``seconds``.

    Raises:
        DataError: wrong root, no images, a missing mask, a corrupt image, unwritable output.
    """
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    folders = split_folders(root)
    if "train" not in folders:
        raise DataError(f"{root} has no images/ folder (nor train/images/)")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    counts, has_masks, written = {}, {}, {}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for split, folder in folders.items():
            if folder in written:  # the flat form: test = train, as hard links
                _link_split(tmp / written[folder], tmp / split, split)
                counts[split], has_masks[split] = counts[written[folder]], has_masks[written[folder]]
                continue
            images, masks = _pairs(folder)
            n = len(images)
            arr = np.empty((n, size, size, 3), dtype=np.uint8)
            labels = np.zeros((n, size, size), dtype=np.uint8) if masks else None
            for i in tqdm(range(n), desc=f"image-folder/{split}", unit="img", disable=not progress):
                arr[i], lab = load_example(images[i], masks[i] if masks else None, size)
                if labels is not None:
                    labels[i] = lab
            arrays: dict[str, np.ndarray] = {"images": arr, "name": np.asarray([p.name for p in images])}
            max_objects = 0
            if labels is not None:
                max_objects = max(1, int(labels.max()))
                arrays["labels"] = labels
                arrays["visibility"], arrays["centres"] = label_statistics(labels, max_objects)
            meta = {"dataset": "image_folder", "split": split, "source": str(root.resolve()), "count": n,
                    "image_size": size, "masks": labels is not None, "max_objects": max_objects,
                    "converter_version": CONVERTER_VERSION}
            if labels is not None:
                meta["iou"] = "foreground"
            write_split(tmp / split, arrays, meta)
            counts[split], has_masks[split], written[folder] = n, labels is not None, split
    return {"out_dir": str(out_dir), "counts": counts, "masks": all(has_masks.values()),
            "seconds": time.perf_counter() - t0}


def _link_split(src: Path, dst: Path, split: str) -> None:
    """``dst`` as a copy of split folder ``src`` with hard-linked arrays (copied where links fail)."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name == "meta.json":
            meta = json.loads(f.read_text())
            meta["split"] = split
            meta["same_images_as"] = src.name
            (dst / f.name).write_text(json.dumps(meta, indent=2, sort_keys=True))
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


def fingerprint(root: str | Path) -> str:
    """A short hash of every image and mask file's path, size and modification time under ``root``."""
    h = hashlib.sha256()
    for split, folder in sorted(split_folders(root).items()):
        for sub in ("images", "masks"):
            if (folder / sub).is_dir():
                for p in _files(folder / sub):
                    st = p.stat()
                    h.update(f"{split}/{sub}/{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def prepare(root: str | Path, size: int | None = None, progress: bool = True) -> Path:
    """Convert the folder once into ``DIR/locseg_cache/`` (again if its files changed); return that directory.

    Args:
        root: image folder.
        size: side to resize to; None reuses any up-to-date conversion, else converts at 128.
        progress: show tqdm bars.

    Raises:
        DataError: as :func:`convert`; an unwritable ``root`` says how to convert elsewhere.
    """
    root = Path(root)
    key = fingerprint(root)
    if size is None:  # any up-to-date conversion will do (e.g. the one training made), else the default size
        done = sorted((root / CACHE_DIR).glob(f"image-folder-*-v{CONVERTER_VERSION}-{key}/train/meta.json"))
        if done:
            return done[-1].parent.parent
        size = DEFAULT_SIZE
    out = root / CACHE_DIR / f"image-folder-{size}-v{CONVERTER_VERSION}-{key}"
    if (out / "train" / "meta.json").is_file():
        return out
    if not os.access(root, os.W_OK):
        raise DataError(f"cannot write the converted cache into {root}; run `locseg convert image-folder {root} "
                        "--out DIR --size N` and pass --data DIR")
    for old in (root / CACHE_DIR).glob(f"image-folder-{size}-*"):  # stale conversions of older files
        shutil.rmtree(old, ignore_errors=True)
    log.info("converting the image folder %s once into %s (%dx%d)", root, out, size, size)
    convert(root, out, size, overwrite=True, progress=progress)
    return out
