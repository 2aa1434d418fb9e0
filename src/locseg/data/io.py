"""Dataset-independent writing: atomic dataset directories (over :func:`locseg.io.atomic_file`),
streaming ``.npy`` files, split seeds, and the object statistics every labelled dataset stores
(``visibility``, ``centres``).

Each dataset module (:mod:`~locseg.data.multi_dsprites`, :mod:`~locseg.data.montezuma`,
:mod:`~locseg.data.flowers`, :mod:`~locseg.data.image_folder`) reads or makes its images and labels
and writes them with these; :func:`locseg.data.write_split` writes one split folder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from locseg.data import DataError, is_dataset_dir
from locseg.io import atomic_file


def _check_output(out_dir: Path, overwrite: bool) -> None:
    """Check ``out_dir`` can be (re)placed and create its parent folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output path exists and is not a directory: {out_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"output directory {out_dir} exists and is not empty (pass overwrite=True to replace it)")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_dataset_dir(out_dir):
        raise DataError(f"refusing to overwrite {out_dir}: it is not empty and holds no locseg dataset (split "
                        "folders with meta.json); remove it yourself or choose another output directory")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot write to {out_dir.parent}: {e}") from None


@contextmanager
def atomic_output_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a dataset directory atomically: yield a temporary folder, renamed into place at the end.

    A dataset directory through :func:`locseg.io.atomic_file`. If the body raises (or is
    interrupted with Ctrl-C) the temporary folder is removed and ``out_dir`` is left as it was.
    With ``overwrite`` an existing ``out_dir`` (a locseg dataset, or empty) is replaced only once
    the new one is complete.

    Args:
        out_dir: dataset directory to create.
        overwrite: replace an existing non-empty ``out_dir``.

    Yields:
        the temporary directory to write the splits into.

    Raises:
        DataError: ``out_dir`` exists and is not empty (without ``overwrite``), holds something
            other than a dataset, is not a directory, or cannot be written.
    """
    out_dir = Path(out_dir)
    _check_output(out_dir, overwrite)
    try:
        with atomic_file(out_dir, replace_directory=True) as tmp:
            tmp.mkdir()
            yield tmp
    except OSError as e:
        raise DataError(f"cannot write dataset to {out_dir}: {e}") from None


class NpyAppender:
    """Write a ``.npy`` file row block by row block when the row count is not known in advance.

    The header is reserved up front and rewritten with the final shape on :meth:`close`
    (padding with spaces, which the ``.npy`` format allows).
    """

    HEADER = 256  # bytes reserved for magic + header; fits any shape we write

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.row_shape, self.dtype, self.rows = path, row_shape, np.dtype(dtype), 0
        self.file = path.open("wb")
        self.file.write(b"\0" * self.HEADER)

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {block.shape[1:]}, expected {self.row_shape}")
        self.file.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.rows, *self.row_shape)}).encode("latin1")
        pad = self.HEADER - 10 - len(header) - 1
        if pad < 0:
            raise ValueError("npy header too long")
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", self.HEADER - 10) + header + b" " * pad + b"\n")
        self.file.close()


def split_seeds(seed: int, names: tuple[str, ...]) -> dict[str, int]:
    """Independent 63-bit seeds per split, derived from ``seed`` with ``SeedSequence.spawn``."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for n, c in zip(names, children,
                                                                                          strict=True)}


def label_statistics(labels: np.ndarray, max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Visibility and visible-pixel centroids of the objects in label maps.

    Args:
        labels: (B, H, W) int, 0 background, 1..max_objects objects.
        max_objects: M, number of object slots.

    Returns:
        ``(visibility, centres)``: (B, M) bool, whether label j + 1 occurs; (B, M, 2) float32
        centroid (y, x) of its pixels, pixel centres at ``(row + 0.5) / H``, ``(col + 0.5) / W``,
        NaN where the label does not occur.
    """
    b, h, w = labels.shape
    k = max_objects + 1
    flat = (np.arange(b, dtype=np.int64)[:, None, None] * k + labels).reshape(-1)  # (B*H*W,)
    rows = np.broadcast_to((np.arange(h, dtype=np.float64)[:, None] + 0.5) / h, (b, h, w)).reshape(-1)
    cols = np.broadcast_to((np.arange(w, dtype=np.float64)[None, :] + 0.5) / w, (b, h, w)).reshape(-1)
    count = np.bincount(flat, minlength=b * k).reshape(b, k)[:, 1:]  # (B, M)
    sum_r = np.bincount(flat, weights=rows, minlength=b * k).reshape(b, k)[:, 1:]  # (B, M)
    sum_c = np.bincount(flat, weights=cols, minlength=b * k).reshape(b, k)[:, 1:]  # (B, M)
    visible = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = np.stack([sum_r / count, sum_c / count], -1)  # (B, M, 2)
    centres[~visible] = np.nan
    return visible, centres.astype(np.float32)
