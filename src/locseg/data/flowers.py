"""Oxford-102 Flowers (Nilsback & Zisserman 2008) with ReDO's segmentation protocol.

The official files (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/) unpack into the layout
this module reads, called the *official layout* here::

    ROOT/jpg/image_00001.jpg ... image_08189.jpg          the photographs
    ROOT/segmim/segmim_00001.jpg ...                      the same photographs, background painted blue
    ROOT/setid.mat                                        trnid (1,020), valid (1,020), tstid (6,149)

ReDO's protocol (Chen, Artieres & Denoyer 2019, ``datasets.py`` and ``train.py`` of their code), which
the paper follows for Table 1:

- **Swapped splits**: ``train`` = ``tstid`` (6,149 images), ``val`` = ``valid`` (1,020),
  ``test`` = ``trnid`` (1,020).
- **Foreground** of a segmentation image with channels (R, G, B):
  ``fg = not (R == 0 or G == 0 or B == 254)``, computed on the full-resolution JPEG.
- **Resize + crop**: the shorter side is resized to 128 (the longer to ``int(128 * long / short)``)
  with nearest-neighbour sampling, then the centre 128 x 128 is cropped (offsets
  ``round((side - 128) / 2)``). ReDO applies this transform, nearest included, to the photograph and
  to the mask alike; ``image_resample="bilinear"`` is offered for the photographs only.

:func:`convert` writes the splits in the layout of :mod:`locseg.data` (``images`` (N, 128, 128, 3)
uint8, ``labels`` (N, 128, 128) uint8 with 0 = background and 1 = flower, ``centres`` (N, 1, 2) and
``visibility`` (N, 1) of the flower mask, ``image_id`` (N,) int32 the official 1-based number).
:func:`prepare` does it once into ``ROOT/locseg_cache/`` so that ``--data ROOT`` works directly.
:func:`download` fetches the official files with checksums and resumable transfers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from locseg.data import DataError, write_split
from locseg.data.io import atomic_output_dir, label_statistics
from locseg.io import atomic_file

log = logging.getLogger(__name__)

IMAGE_SIZE = 128
CONVERTER_VERSION = 1
"""Bumped whenever the same official files would convert to different arrays (invalidates caches)."""

SPLITS: dict[str, str] = {"train": "tstid", "val": "valid", "test": "trnid"}
"""ReDO's split name -> the ``setid.mat`` key it reads (train and test swapped w.r.t. the official names)."""

SPLIT_SIZES = {"train": 6149, "val": 1020, "test": 1020}
BACKGROUND_BLUE = 254  # the segmim background is painted (0, 0, 254)
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}
CACHE_DIR = "locseg_cache"

BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name on the server, MD5, and the folder an archive unpacks to."""

    name: str
    md5: str | None  # None: size-checked only
    folder: str | None = None  # the archive's top folder (None: not an archive)


# MD5s: 102flowers.tgz and setid.mat as listed by torchvision's Flowers102 dataset; 102segmentations.tgz
# as listed by a third-party Flowers102-with-segmentations loader (the VGG site publishes no checksums).
FILES: tuple[RemoteFile, ...] = (
    RemoteFile("102flowers.tgz", "52808999861908f626f3c1f4e79d11fa", "jpg"),
    RemoteFile("102segmentations.tgz", "51375996b6c4f367a4b9f4492d7ecef5", "segmim"),
    RemoteFile("setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c"),
)


# --------------------------------------------------------------------------- layout and transforms


def is_official_layout(root: str | Path) -> bool:
    """Whether ``root`` looks like the unpacked official files (``setid.mat`` and ``jpg/``)."""
    root = Path(root)
    return (root / "setid.mat").is_file() and (root / "jpg").is_dir()


def foreground_from_segmim(seg: np.ndarray) -> np.ndarray:
    """ReDO's foreground rule for a segmentation image whose background is painted blue.

    A pixel is background when its red channel is 0, or its green channel is 0, or its blue
    channel is exactly 254 (the painted background is (0, 0, 254); JPEG compression smears it, and
    this rule is ReDO's, kept as is, not a cleaner one).

    Args:
        seg: (H, W, 3) uint8 RGB segmentation image.

    Returns:
        (H, W) bool foreground.

    >>> seg = np.array([[[0, 0, 254], [200, 30, 40], [0, 90, 90], [12, 40, 254]]], dtype=np.uint8)
    >>> foreground_from_segmim(seg).tolist()
    [[False, True, False, False]]
    """
    if seg.ndim != 3 or seg.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) segmentation image, got shape {seg.shape}")
    return (seg[..., 0] != 0) & (seg[..., 1] != 0) & (seg[..., 2] != BACKGROUND_BLUE)  # (H, W)


def resize_shorter_and_crop(image: Image.Image, size: int, resample: int = Image.NEAREST) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre ``size`` x ``size`` square.

    The sizes and offsets of torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image,
    the transform ReDO uses: the longer side becomes ``int(size * long / short)`` (truncated), the
    crop starts at ``round((side - size) / 2)`` (Python's round, half to even).

    Args:
        image: a PIL image of any size and mode.
        size: output side.
        resample: PIL resampling filter.

    Returns:
        a ``size`` x ``size`` PIL image of the same mode.
    """
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _open_rgb(path: Path) -> Image.Image:
    """Fully decode an image file as RGB; a missing, truncated or corrupt file is a DataError."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path} (corrupt or truncated?): {e}") from None


def load_example(root: str | Path, image_id: int, size: int = IMAGE_SIZE,
                 image_resample: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """One photograph and its ReDO foreground, resized and centre-cropped.

    Args:
        root: official layout.
        image_id: official 1-based image number.
        size: output side (ReDO: 128).
        image_resample: ``nearest`` (ReDO) or ``bilinear``, for the photograph; the mask is always
            nearest.

    Returns:
        ``(image, label)``: (size, size, 3) uint8 and (size, size) uint8, 1 = flower.

    Raises:
        DataError: missing or unreadable files.
    """
    root = Path(root)
    photo = _open_rgb(root / "jpg" / f"image_{image_id:05d}.jpg")
    seg = np.asarray(_open_rgb(root / "segmim" / f"segmim_{image_id:05d}.jpg"))  # (H, W, 3)
    if seg.shape[:2] != (photo.size[1], photo.size[0]):
        raise DataError(f"segmim_{image_id:05d}.jpg is {seg.shape[1]}x{seg.shape[0]} but image_{image_id:05d}.jpg "
                        f"is {photo.size[0]}x{photo.size[1]}")
    fg = Image.fromarray(foreground_from_segmim(seg).astype(np.uint8) * 255)  # (H, W) mode L
    image = np.asarray(resize_shorter_and_crop(photo, size, RESAMPLE[image_resample]), dtype=np.uint8)
    label = (np.asarray(resize_shorter_and_crop(fg, size, Image.NEAREST)) > 127).astype(np.uint8)
    return image, label


def read_setid(path: str | Path) -> dict[str, np.ndarray]:
    """The three ReDO splits from ``setid.mat``: {split: (N,) int64 official 1-based ids}.

    Raises:
        DataError: missing or unreadable file, a missing key, or ids outside 1..99999.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        mat = loadmat(path)
    except (OSError, ValueError, TypeError) as e:
        raise DataError(f"cannot read {path} (corrupt?): {e}") from None
    out = {}
    for split, key in SPLITS.items():
        if key not in mat:
            raise DataError(f"{path} has no {key!r} array (expected trnid, valid, tstid)")
        ids = np.asarray(mat[key]).reshape(-1).astype(np.int64)  # (N,)
        if ids.size == 0 or ids.min() < 1 or ids.max() > 99999:
            raise DataError(f"{path}: {key} holds ids outside 1..99999")
        out[split] = ids
    return out


# --------------------------------------------------------------------------- conversion


def convert(root: str | Path, out_dir: str | Path, size: int = IMAGE_SIZE, image_resample: str = "nearest",
            overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Convert the official layout into a dataset directory with ``train``, ``val`` and ``test`` splits.

    Written under a temporary sibling and renamed into place when complete: an error (a missing
    or corrupt file) or Ctrl-C leaves nothing behind.

    Args:
        root: official layout (``jpg/``, ``segmim/``, ``setid.mat``).
        out_dir: dataset directory to create.
        size: output side (ReDO: 128).
        image_resample: ``nearest`` (ReDO) or ``bilinear`` for the photographs.
        overwrite: replace an existing non-empty ``out_dir``.
        progress: show a tqdm bar per split.

    Returns:
        dict with ``out_dir``, ``counts`` ({split: n}) and ``seconds``.

    Raises:
        DataError: wrong root, missing or corrupt files, unwritable output.
    """
    t0 = time.perf_counter()
    root = Path(root)
    if image_resample not in RESAMPLE:
        raise ValueError(f"image_resample must be one of {', '.join(RESAMPLE)}, got {image_resample!r}")
    if not root.is_dir():
        raise DataError(f"Flowers root not found: {root}")
    if not is_official_layout(root):
        raise DataError(f"{root} is not the official Flowers layout (jpg/, segmim/, setid.mat); "
                        f"run `locseg download flowers --root {root}`")
    if not (root / "segmim").is_dir():
        raise DataError(f"{root} has no segmim/ folder (unpack 102segmentations.tgz there)")
    ids = read_setid(root / "setid.mat")
    counts = {}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for split, split_ids in ids.items():
            n = len(split_ids)
            images = np.empty((n, size, size, 3), dtype=np.uint8)
            labels = np.empty((n, size, size), dtype=np.uint8)
            for i, image_id in enumerate(tqdm(split_ids, desc=f"flowers/{split}", unit="img", disable=not progress)):
                images[i], labels[i] = load_example(root, int(image_id), size, image_resample)
            visibility, centres = label_statistics(labels, 1)  # (N, 1), (N, 1, 2)
            meta = {"dataset": "flowers", "split": split, "setid_key": SPLITS[split], "count": n,
                    "image_size": size, "protocol": "redo", "iou": "redo", "image_resample": image_resample,
                    "mask_resample": "nearest", "foreground_rule": "not (R == 0 or G == 0 or B == 254)",
                    "max_objects": 1, "converter_version": CONVERTER_VERSION}
            write_split(tmp / split, {"images": images, "labels": labels, "centres": centres,
                                      "visibility": visibility, "image_id": split_ids.astype(np.int32)}, meta)
            counts[split] = n
            log.info("converted flowers/%s: %d images", split, n)
    return {"out_dir": str(out_dir), "counts": counts, "seconds": time.perf_counter() - t0}


def cache_path(root: str | Path, size: int = IMAGE_SIZE, image_resample: str = "nearest") -> Path:
    """Where :func:`prepare` keeps the converted splits of an official layout."""
    return Path(root) / CACHE_DIR / f"flowers-{size}-{image_resample}-v{CONVERTER_VERSION}"


def prepare(root: str | Path, size: int = IMAGE_SIZE, image_resample: str = "nearest",
            progress: bool = True) -> Path:
    """Convert the official layout once into ``ROOT/locseg_cache/`` and return that dataset directory.

    Raises:
        DataError: as :func:`convert`; an unwritable ``root`` says how to convert elsewhere.
    """
    out = cache_path(root, size, image_resample)
    if (out / "test" / "meta.json").is_file():
        return out
    log.info("converting the Flowers files in %s once into %s (ReDO's protocol, %dx%d)", root, out, size, size)
    if not os.access(root, os.W_OK):
        raise DataError(f"cannot write the converted cache into {root}; run `locseg convert flowers --root {root} "
                        "--out DIR` and pass --data DIR")
    convert(root, out, size, image_resample, overwrite=True, progress=progress)
    return out


# --------------------------------------------------------------------------- download


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, spec: RemoteFile) -> None:
    """Raise DataError (and remove ``path``) if its MD5 differs from ``spec``'s."""
    if spec.md5 is None:
        return
    got = file_md5(path)
    if got != spec.md5:
        path.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {spec.name}: md5 {got}, expected {spec.md5}; the file was removed, "
                        "run the command again to download it afresh")


def _fetch(url: str, dest: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``dest``, resuming from ``dest``'s current length with an HTTP Range request."""
    offset = dest.stat().st_size if dest.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the partial file is already complete
            return
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot download {url}: {reason} (no network? copy the files into {dest.parent} "
                        "and run again)") from None
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        try:
            with open(dest, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=dest.name.removesuffix(".part"),
                                             disable=not progress) as bar:
                while block := response.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
        except (urllib.error.URLError, OSError) as e:  # connection dropped: keep the part for a resume
            raise DataError(f"download of {url} interrupted after {dest.stat().st_size} bytes: {e}; run again "
                            "to resume") from None
    if total is not None and dest.stat().st_size != total:
        raise DataError(f"download of {url} incomplete ({dest.stat().st_size} of {total} bytes); run again to resume")


def _safe_members(tar: tarfile.TarFile, folder: str, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's regular files and folders under ``folder/``; anything else is refused."""
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: refusing unsafe archive member {m.name!r}")
        if parts and parts[0] == folder:
            members.append(m)
    if not any(m.isfile() for m in members):
        raise DataError(f"{archive} holds no files under {folder}/ (not the official archive?)")
    return members


def _extract(archive: Path, folder: str, root: Path) -> None:
    """Unpack ``archive``'s ``folder/`` into ``root/folder`` atomically (:func:`locseg.io.atomic_file`)."""
    with atomic_file(root / folder) as tmp:  # tmp is .../folder: the members' own top folder
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, folder, archive)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp.parent, members=members, **kwargs)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"cannot unpack {archive} (corrupt?): {e}") from None


def download(root: str | Path, base_url: str = BASE_URL, files: tuple[RemoteFile, ...] = FILES,
             progress: bool = True, timeout: float = 30.0) -> dict[str, str]:
    """Fetch and unpack the official Flowers files into ``root`` (the official layout).

    A file whose unpacked form is already there (``jpg/``, ``segmim/``, ``setid.mat``) is not
    fetched, so a ``root`` holding the files works with no network. Otherwise each file is
    downloaded into ``NAME.part`` (resumed with an HTTP Range request if a part is there), its MD5
    checked, renamed to ``NAME``, and archives unpacked into a temporary folder renamed into place.

    Args:
        root: folder to fill (created if missing).
        base_url: where the files live (a mirror, or a local server in tests).
        files: the files to fetch, with checksums.
        progress: show a tqdm bar per file.
        timeout: seconds before a silent connection fails.

    Returns:
        {file name: "present" | "downloaded" | "unpacked"} (unpacked: from an archive already there).

    Raises:
        DataError: no network, an HTTP error, a checksum mismatch, a corrupt archive, unwritable root.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {root}: {e.strerror}") from None
    status = {}
    for spec in files:
        target = root / (spec.folder or spec.name)
        if target.exists():
            status[spec.name] = "present"
            continue
        archive = root / spec.name
        if archive.is_file():
            status[spec.name] = "unpacked"
            _check(archive, spec)
        else:
            part = root / f"{spec.name}.part"
            _fetch(base_url.rstrip("/") + "/" + spec.name, part, progress, timeout)
            _check(part, spec)
            os.replace(part, archive)
            status[spec.name] = "downloaded"
        if spec.folder is not None:
            _extract(archive, spec.folder, root)
        log.info("%s: %s", spec.name, status[spec.name])
    return status
