"""DeepMind's official Multi-dSprites files (``multi_dsprites_*.tfrecords``): read, convert, write.

The records are ``tf.train.Example`` protobufs read with the generic codec of
:mod:`locseg.data.tfrecord`; the variants' K and C come from :data:`locseg.data.multi_dsprites.SPECS`.

Features of the official files, K = ``max_num_entities`` entities (entity 0 is the background;
absent entities have all-zero masks and visibility 0), C = 1 for ``binarized``, else 3:

- ``image``: declared ``FixedLenFeature([64, 64, C], tf.string)``, so stored as a bytes_list of
  64*64*C one-byte strings (reading only the first value gives a single pixel).
- ``mask``: ``[64, 64, K, 1]`` one-byte strings, values 0 or 255.
- ``x``, ``y``, ``shape``, ``scale``, ``orientation``, ``visibility``: float_list of K values;
  ``color``: float_list of K*C values ([K, C]).

:func:`read_records` yields the structure DeepMind's loader returns (``mask`` transposed to
[K, 64, 64, 1]); :func:`convert` turns a file into the dataset layout of :mod:`locseg.data`
(the same arrays as :mod:`locseg.data.multi_dsprites` writes). :func:`write_example_records`
writes such a file (used by the tests to build small fixtures).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from locseg.data import DataError
from locseg.data.io import NpyAppender, atomic_output_dir, label_statistics
from locseg.data.multi_dsprites import IMAGE_SIZE, SPECS
from locseg.data.tfrecord import (
    _feature_bodies,
    _float_values,
    _one_byte_values,
    encode_example,
    iter_tfrecord,
    one_byte_strings,
    write_tfrecord,
)

log = logging.getLogger(__name__)

NUM_ENTITIES = {variant: spec.max_objects + 1 for variant, spec in SPECS.items()}
"""K, the number of masks (background included) per variant in the official files."""
CHANNELS = {variant: 1 if spec.colours == "white_on_black" else 3 for variant, spec in SPECS.items()}
FLOAT_FEATURES = ("x", "y", "shape", "scale", "orientation", "visibility")
CONVERTER_VERSION = 1

_BATCH = 256  # records converted per vectorised step


# ------------------------------------------------------------------------- Multi-dSprites samples


def _check_variant(variant: str) -> tuple[int, int]:
    if variant not in NUM_ENTITIES:
        raise ValueError(f"unknown Multi-dSprites variant {variant!r}; valid: {', '.join(NUM_ENTITIES)}")
    return NUM_ENTITIES[variant], CHANNELS[variant]


def _pixels(payload: bytes, bodies: dict, name: str, count: int) -> np.ndarray:
    """A ``FixedLenFeature([...], tf.string)`` of one-byte strings as ``count`` uint8 values."""
    if name not in bodies:
        raise DataError(f"record has no {name!r} feature")
    kind, start, end = bodies[name]
    if kind != 1:
        raise DataError(f"feature {name!r} must be a bytes_list")
    values = _one_byte_values(payload, start, end)
    if values.size != count:
        raise DataError(f"feature {name!r} has {values.size} one-byte strings, expected {count}")
    return values


def decode_sample(payload: bytes, variant: str) -> dict[str, np.ndarray]:
    """Decode one official Multi-dSprites record like DeepMind's loader does.

    Args:
        payload: serialized ``tf.train.Example``.
        variant: ``binarized``, ``colored_on_grayscale`` or ``colored_on_colored``.

    Returns:
        ``image`` (64, 64, C) uint8, ``mask`` (K, 64, 64, 1) uint8 (0/255), ``visibility``, ``x``,
        ``y``, ``shape``, ``scale``, ``orientation`` (K,) float32, ``color`` (K, C) float32.

    Raises:
        ValueError: unknown variant. DataError: missing or mis-sized features.
    """
    k, c = _check_variant(variant)
    bodies = _feature_bodies(payload)
    hw = IMAGE_SIZE * IMAGE_SIZE
    out = {
        "image": _pixels(payload, bodies, "image", hw * c).reshape(IMAGE_SIZE, IMAGE_SIZE, c),
        # stored [H, W, K, 1]; DeepMind's loader transposes to [K, H, W, 1]
        "mask": _pixels(payload, bodies, "mask", hw * k).reshape(IMAGE_SIZE, IMAGE_SIZE, k, 1)
        .transpose(2, 0, 1, 3).copy(),
    }
    for name, size in [(n, k) for n in FLOAT_FEATURES] + [("color", k * c)]:
        if name not in bodies or bodies[name][0] != 2:
            raise DataError(f"record has no float_list feature {name!r}")
        values = _float_values(payload, bodies[name][1], bodies[name][2])
        if values.size != size:
            raise DataError(f"feature {name!r} has {values.size} floats, expected {size}")
        out[name] = values
    out["color"] = out["color"].reshape(k, c)
    return out


def read_records(path: str | Path, variant: str) -> Iterator[dict[str, np.ndarray]]:
    """Stream the samples of an official ``multi_dsprites_<variant>.tfrecords`` file.

    Args:
        path: the TFRecord file (gzip-compressed as distributed, or uncompressed).
        variant: ``binarized``, ``colored_on_grayscale`` or ``colored_on_colored``; fixes K and C.

    Yields:
        dicts as :func:`decode_sample` returns: ``image`` (64, 64, C) uint8, ``mask``
        (K, 64, 64, 1) uint8, ``visibility``/``x``/``y``/``shape``/``scale``/``orientation`` (K,)
        float32, ``color`` (K, C) float32.

    Raises:
        ValueError: unknown variant. DataError: bad gzip stream, truncated file, CRC mismatch or
            malformed record (the message names the record index).
    """
    _check_variant(variant)
    for index, payload in enumerate(iter_tfrecord(path)):
        try:
            yield decode_sample(payload, variant)
        except DataError as e:
            raise DataError(f"{path}: record {index}: {e}") from None


def encode_sample(sample: dict[str, np.ndarray], variant: str) -> bytes:
    """Serialize a sample (the structure :func:`read_records` yields) in the official layout."""
    k, c = _check_variant(variant)
    image = np.asarray(sample["image"], dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, c)
    mask = np.asarray(sample["mask"], dtype=np.uint8).reshape(k, IMAGE_SIZE, IMAGE_SIZE, 1)
    features: dict[str, Any] = {n: np.asarray(sample[n], np.float32).reshape(k) for n in FLOAT_FEATURES}
    features["color"] = np.asarray(sample["color"], np.float32).reshape(k * c)
    features["image"] = one_byte_strings(image)  # [64, 64, C]
    features["mask"] = one_byte_strings(mask.transpose(1, 2, 0, 3))  # stored [64, 64, K, 1]
    return encode_example(features)


def write_example_records(path: str | Path, samples: Iterable[dict[str, np.ndarray]], variant: str,
                          compress: bool = True) -> int:
    """Write samples as an official-layout Multi-dSprites TFRecord file (gzip, with CRCs).

    Args:
        path: output file.
        samples: dicts as :func:`read_records` yields (``image`` (64, 64, C), ``mask``
            (K, 64, 64, 1), the (K,) float latents, ``color`` (K, C)).
        variant: fixes K and C.
        compress: gzip the stream (as the official files are).

    Returns:
        number of records written.
    """
    _check_variant(variant)
    return write_tfrecord(path, (encode_sample(s, variant) for s in samples), compress=compress)


# ----------------------------------------------------------------------------------- conversion


def _sample_arrays(batch: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Turn official samples into the arrays of our layout (object slots = entities 1..K-1)."""
    mask = np.stack([s["mask"][..., 0] for s in batch])  # (B, K, 64, 64)
    k = mask.shape[1]
    labels = mask.argmax(1).astype(np.uint8)  # (B, 64, 64): all-zero pixels -> 0 = background
    visibility, centres = label_statistics(labels, k - 1)
    image = np.stack([s["image"] for s in batch])  # (B, 64, 64, C)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)  # (B, 64, 64, 3)
    colour = np.stack([s["color"] for s in batch]).astype(np.float32)  # (B, K, C)
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)  # (B, K, 3)

    def obj(name: str) -> np.ndarray:
        return np.stack([s[name][1:] for s in batch]).astype(np.float32)  # (B, K-1)

    return {
        "images": image,
        "labels": labels,
        "visibility": visibility,
        "centres": centres,
        "shape": np.rint(obj("shape")).astype(np.int8),
        "scale": obj("scale"),
        "orientation": obj("orientation"),
        "position": np.stack([obj("x"), obj("y")], -1),  # (B, K-1, 2) (x, y)
        "colour": colour[:, 1:],
        "background": colour[:, 0],
        "num_objects": (np.stack([s["visibility"][1:] for s in batch]) > 0.5).sum(1).astype(np.uint8),
    }


def convert(
    path: str | Path,
    variant: str,
    out_dir: str | Path,
    num_train: int | None = None,
    num_test: int = 320,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert an official Multi-dSprites TFRecord file into a locseg dataset directory.

    Split rule: the first ``num_test`` records form ``test``; the following ``num_train``
    records (all the remaining ones when ``None``) form ``train``. Records are streamed, so
    memory use does not grow with the file. Written atomically (temporary sibling directory,
    renamed into place when complete).

    Arrays per split (M = K - 1 object slots, slot j = entity j + 1 = label j + 1): ``images``
    (N, 64, 64, 3) uint8 (grey images repeated to 3 channels), ``labels`` (N, 64, 64) uint8 (argmax
    over the masks; all-zero pixels are background), ``visibility`` (N, M) bool and ``centres``
    (N, M, 2) float32 from the label map (as the generator computes them), latents ``shape``
    (N, M) int8 (the file's values, rounded), ``scale``, ``orientation`` (N, M) float32,
    ``position`` (N, M, 2) float32 (x, y), ``colour`` (N, M, 3) float32, ``background`` (N, 3)
    float32 (entity 0's colour) and ``num_objects`` (N,) uint8 (entities with visibility > 0.5).

    Args:
        path: the official ``.tfrecords`` file.
        variant: ``binarized``, ``colored_on_grayscale`` or ``colored_on_colored``.
        out_dir: dataset directory to create.
        num_train: training records after the test ones; None = the rest of the file.
        num_test: test records at the start of the file (> 0).
        overwrite: replace an existing non-empty ``out_dir``.
        progress: show a tqdm bar.

    Returns:
        dict with ``out_dir``, ``variant``, ``counts`` ({split: n}), ``seconds``.

    Raises:
        ValueError: unknown variant or bad counts. DataError: unreadable/corrupt file, fewer
            records than requested, or an output directory that cannot be written.
    """
    t0 = time.perf_counter()
    k, _ = _check_variant(variant)
    for name, value in (("num_test", num_test), ("num_train", num_train)):
        if value is None and name == "num_train":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"TFRecord file not found: {path}")
    plan = [("test", int(num_test)), ("train", None if num_train is None else int(num_train))]
    counts: dict[str, int] = {}
    records = read_records(path, variant)
    total = None if num_train is None else num_test + num_train
    bar = tqdm(total=total, desc=f"convert {path.name}", unit="rec", disable=not progress)
    with bar, atomic_output_dir(out_dir, overwrite) as tmp:
        for split, want in plan:
            folder = tmp / split
            folder.mkdir()
            writers: dict[str, NpyAppender] = {}
            n = 0
            done = False
            while not done and (want is None or n < want):
                size = _BATCH if want is None else min(_BATCH, want - n)
                batch = []
                for sample in records:
                    batch.append(sample)
                    if len(batch) == size:
                        break
                done = len(batch) < size
                if batch:
                    arrays = _sample_arrays(batch)
                    for key, arr in arrays.items():
                        if key not in writers:
                            writers[key] = NpyAppender(folder / f"{key}.npy", arr.shape[1:], arr.dtype)
                        writers[key].append(arr)
                    n += len(batch)
                    bar.update(len(batch))
            for w in writers.values():
                w.close()
            if n == 0 or (want is not None and n < want):
                raise DataError(f"{path} has too few records: split {split!r} wanted {want or 'at least 1'}, "
                                f"got {n} (after {sum(counts.values())} for earlier splits)")
            counts[split] = n
            meta = {"dataset": "multi_dsprites", "variant": variant, "split": split, "source": str(path),
                    "first_record": sum(counts.values()) - n, "count": n, "max_objects": k - 1,
                    "converter_version": CONVERTER_VERSION, "image_size": IMAGE_SIZE}
            (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    seconds = time.perf_counter() - t0
    log.info("converted %s -> %s: %s in %.1f s", path, out_dir, counts, seconds)
    return {"out_dir": str(out_dir), "variant": variant, "counts": counts, "seconds": seconds}
