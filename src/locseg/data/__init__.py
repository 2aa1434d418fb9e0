"""Datasets: one on-disk layout and one reader shared by every dataset.

A dataset directory holds one folder per split (``train``, ``test``, ...). Each split folder holds
``meta.json`` and one ``.npy`` file per array, so that every array is memory-mapped on load:

- ``images`` (N, H, W, 3) uint8
- ``labels`` (N, H, W) uint8 instance map, 0 = background, 1..n objects
- ``centres`` (N, max_objects, 2) float32 normalised (y, x), NaN for absent objects
- ``visibility`` (N, max_objects) bool
- dataset-specific latents (e.g. ``shape``, ``scale``, ``orientation``, ``position``, ``colour``)

Object slot j of ``centres``/``visibility``/latents corresponds to label j + 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class DataError(ValueError):
    """A dataset directory or file that cannot be read (missing, truncated, wrong layout)."""


REQUIRED_KEYS = ("images",)
# every dataset locseg reads or makes; ``meta.json`` names one and ``data.dataset`` of a config too
DATASETS = ("multi_dsprites", "montezuma", "flowers", "image_folder")


def resolve_dataset(root: str | Path, image_size: int | None = None, progress: bool = True) -> Path:
    """The dataset directory for ``root``: ``root`` itself, or a converted cache of a raw layout.

    Raw layouts converted once into ``root/locseg_cache/`` (see their modules): the official
    Oxford-102 Flowers files (:mod:`locseg.data.flowers`, always 128 x 128, ReDO's protocol) and a
    folder of images with optional masks (:mod:`locseg.data.image_folder`, resized to
    ``image_size``; when None, an existing conversion of any size is reused, else 128).

    Raises:
        DataError: as the conversions (missing or corrupt files, unwritable ``root``).
    """
    root = Path(root)
    if not root.is_dir() or any((p / "meta.json").is_file() for p in root.iterdir() if p.is_dir()):
        return root
    from . import flowers, image_folder

    if flowers.is_official_layout(root):
        return flowers.prepare(root, progress=progress)
    if image_folder.is_image_folder(root):
        return image_folder.prepare(root, image_size, progress=progress)
    return root


def load_split(root: str | Path, split: str, image_size: int | None = None) -> dict[str, Any]:
    """Load one split of a dataset directory as a dict of (memory-mapped) numpy arrays.

    Args:
        root: dataset directory written by ``locseg generate`` / ``locseg convert``, or a raw
            layout that :func:`resolve_dataset` converts (Flowers' official files, an image folder).
        split: split name, e.g. ``"train"`` or ``"test"``.
        image_size: side an image folder is resized to (ignored for other datasets).

    Returns:
        dict with ``images`` (N, H, W, 3) uint8 and, where the dataset has them, ``labels``
        (N, H, W) uint8, ``centres`` (N, M, 2) float32, ``visibility`` (N, M) bool, latents, and
        ``meta`` (the split's ``meta.json`` as a dict).

    Raises:
        DataError: missing directory/split, unreadable or inconsistent arrays.
    """
    root = resolve_dataset(root, image_size)
    if not root.is_dir():
        raise DataError(f"dataset directory not found: {root}")
    folder = root / split
    if not folder.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists())
        raise DataError(f"split {split!r} not found in {root} (available: {', '.join(available) or 'none'})")
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {folder / 'meta.json'}: {e}") from None
    out: dict[str, Any] = {"meta": meta}
    for path in sorted(folder.glob("*.npy")):
        try:
            out[path.stem] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path} (truncated or corrupt?): {e}") from None
    for key in REQUIRED_KEYS:
        if key not in out:
            raise DataError(f"{folder} has no {key}.npy")
    n = out["images"].shape[0]
    for key, arr in out.items():
        if key != "meta" and arr.shape[0] != n:
            raise DataError(f"{folder}: {key}.npy has {arr.shape[0]} rows but images.npy has {n}")
    if out["images"].ndim != 4 or out["images"].shape[-1] != 3 or out["images"].dtype != np.uint8:
        raise DataError(f"{folder}: images.npy must be (N, H, W, 3) uint8, got "
                        f"{out['images'].shape} {out['images'].dtype}")
    if "labels" in out and out["labels"].shape[1:] != out["images"].shape[1:3]:
        raise DataError(f"{folder}: labels.npy is {tuple(out['labels'].shape[1:])} per image but images.npy is "
                        f"{tuple(out['images'].shape[1:3])}; each label map must match its image")
    return out


def is_dataset_dir(root: str | Path) -> bool:
    """True when ``root`` holds a dataset in this layout: at least one split folder with ``meta.json``
    and nothing else but other such folders, a ``locseg_cache`` and hidden files."""
    root = Path(root)
    entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "locseg_cache"]
    return bool(entries) and all(p.is_dir() and (p / "meta.json").is_file() for p in entries)


def write_split(folder: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write one split folder in the layout :func:`load_split` reads (caller handles atomicity)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        np.save(folder / f"{key}.npy", np.ascontiguousarray(arr))
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
