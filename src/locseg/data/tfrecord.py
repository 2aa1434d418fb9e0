"""Read DeepMind's official ``multi_dsprites_*.tfrecords`` without TensorFlow.

File format (what TensorFlow writes with ``compression_type="GZIP"``):

- The whole file is one gzip stream; the record framing is inside it. Each record is
  ``uint64 length`` (little-endian), ``uint32 masked_crc32c(length bytes)``, ``payload``,
  ``uint32 masked_crc32c(payload)``, where ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8``
  (mod 2**32). Uncompressed files (no gzip magic) are read too.
- Each payload is a ``tf.train.Example`` protobuf: ``Example{features: Features = 1}``,
  ``Features{feature: map<string, Feature> = 1}``, ``Feature{oneof bytes_list = 1,
  float_list = 2, int64_list = 3}``, each list a ``repeated value = 1`` (floats and ints usually
  packed). :func:`parse_example` is a small wire-format parser for exactly this.

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

import gzip
import json
import logging
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c
import numpy as np
from tqdm import tqdm

from locseg.data import DataError
from locseg.data.multi_dsprites import atomic_output_dir, label_statistics

log = logging.getLogger(__name__)

IMAGE_SIZE = 64
NUM_ENTITIES = {"binarized": 4, "colored_on_grayscale": 6, "colored_on_colored": 5}
"""K, the number of masks (background included) per variant in the official files."""
CHANNELS = {"binarized": 1, "colored_on_grayscale": 3, "colored_on_colored": 3}
FLOAT_FEATURES = ("x", "y", "shape", "scale", "orientation", "visibility")
CONVERTER_VERSION = 1

_MASK_DELTA = 0xA282EAD8
_BATCH = 256  # records converted per vectorised step


# ----------------------------------------------------------------------------- record framing


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` mod 2**32."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _open_stream(path: Path) -> BinaryIO:
    """Open a TFRecord file, through gzip when it starts with the gzip magic bytes."""
    try:
        with path.open("rb") as f:
            magic = f.read(2)
        return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # type: ignore[return-value]
    except OSError as e:
        raise DataError(f"cannot open TFRecord file {path}: {e}") from None


def _read_exact(stream: BinaryIO, n: int, path: Path, index: int, what: str) -> bytes | None:
    """Read exactly n bytes; None at a clean end of file (only allowed before a record)."""
    try:
        data = stream.read(n)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: bad or truncated gzip stream while reading record {index}: {e}") from None
    if len(data) == n:
        return data
    if len(data) == 0 and what == "length":
        return None
    raise DataError(f"{path}: truncated file: record {index} {what} has {len(data)} of {n} bytes")


def iter_tfrecord(path: str | Path) -> Iterator[bytes]:
    """Yield the payloads of a TFRecord file, checking both CRCs of every record.

    Args:
        path: a ``.tfrecords`` file, gzip-compressed (detected) or not.

    Yields:
        each record's payload bytes, in file order.

    Raises:
        DataError: unreadable file, bad gzip stream, truncated record or CRC mismatch; the
            message names the record index (0-based).
    """
    path = Path(path)
    with _open_stream(path) as stream:
        index = 0
        while True:
            header = _read_exact(stream, 12, path, index, "length")
            if header is None:
                return
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DataError(f"{path}: CRC mismatch in the length of record {index} (corrupt file?)")
            payload = _read_exact(stream, length, path, index, "payload")
            footer = _read_exact(stream, 4, path, index, "payload CRC")
            if masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{path}: CRC mismatch in the payload of record {index} (corrupt file?)")
            yield payload
            index += 1


def write_tfrecord(path: str | Path, payloads: Iterable[bytes], compress: bool = True) -> int:
    """Write payloads as TFRecord records (with CRCs), gzip-compressing the whole file by default.

    Args:
        path: output file.
        payloads: record payloads (e.g. from :func:`encode_example`).
        compress: gzip the stream as the official Multi-dSprites files are.

    Returns:
        number of records written.
    """
    count = 0
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        for payload in payloads:
            length = struct.pack("<Q", len(payload))
            f.write(length + struct.pack("<I", masked_crc32c(length)))
            f.write(payload + struct.pack("<I", masked_crc32c(payload)))
            count += 1
    return count


# ------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DataError("malformed protobuf: varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DataError("malformed protobuf: varint longer than 10 bytes")


def _fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """Iterate ``(field number, wire type, value)`` of a message in ``buf[start:end]``.

    The value is an int for varints, ``(offset, length)`` of the body for length-delimited
    fields, and the raw bytes for fixed32/fixed64.
    """
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = (pos, length)
            pos += length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise DataError(f"malformed protobuf: unsupported wire type {wire}")
        if pos > end:
            raise DataError("malformed protobuf: field runs past the end of the message")
        yield field, wire, value


def _bytes_values(buf: bytes, start: int, end: int) -> list[bytes]:
    return [buf[o:o + n] for f, w, (o, n) in _fields(buf, start, end) if f == 1 and w == 2]


def _one_byte_values(buf: bytes, start: int, end: int) -> np.ndarray:
    """A BytesList whose values are all one byte long, as a uint8 array (vectorised fast path)."""
    body = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    if body.size % 3 == 0 and np.all(body[0::3] == 0x0A) and np.all(body[1::3] == 1):
        return body[2::3].copy()  # each value is encoded as tag 0x0A, length 1, the byte
    values = _bytes_values(buf, start, end)
    if any(len(v) != 1 for v in values):
        lengths = sorted({len(v) for v in values})
        raise DataError(f"expected one-byte strings, found values of lengths {lengths[:5]}")
    return np.frombuffer(b"".join(values), dtype=np.uint8)


def _float_values(buf: bytes, start: int, end: int) -> np.ndarray:
    parts = []
    for f, w, v in _fields(buf, start, end):
        if f != 1:
            continue
        if w == 2:  # packed
            o, n = v
            parts.append(np.frombuffer(buf, dtype="<f4", count=n // 4, offset=o))
        elif w == 5:
            parts.append(np.frombuffer(v, dtype="<f4"))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _int64_values(buf: bytes, start: int, end: int) -> np.ndarray:
    out = []
    for f, w, v in _fields(buf, start, end):
        if f != 1:
            continue
        if w == 2:  # packed varints
            o, n = v
            pos = o
            while pos < o + n:
                x, pos = _varint(buf, pos)
                out.append(x)
        elif w == 0:
            out.append(v)
    return np.array(out, dtype=np.uint64).view(np.int64)  # two's complement for negatives


def _feature_bodies(payload: bytes) -> dict[str, tuple[int, int, int]]:
    """Map feature name -> (kind field number 1/2/3, body start, body end) of an Example."""
    out = {}
    for f, w, (fo, fn) in _fields(payload):
        if f != 1 or w != 2:
            continue  # Example.features
        for g, w2, (eo, en) in _fields(payload, fo, fo + fn):
            if g != 1 or w2 != 2:
                continue  # Features.feature map entry
            key, body = None, (0, 0)
            for h, w3, v in _fields(payload, eo, eo + en):
                if h == 1 and w3 == 2:
                    key = payload[v[0]:v[0] + v[1]].decode("utf-8")
                elif h == 2 and w3 == 2:
                    body = v  # Feature message
            if key is None:
                raise DataError("malformed tf.train.Example: feature map entry without a key")
            kind, span = 0, (body[0], body[0])
            for k, w4, v in _fields(payload, body[0], body[0] + body[1]):
                if k in (1, 2, 3) and w4 == 2:
                    kind, span = k, (v[0], v[0] + v[1])
            out[key] = (kind, span[0], span[1])
    return out


def parse_example(payload: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Decode a serialized ``tf.train.Example``.

    Args:
        payload: the protobuf bytes of one record.

    Returns:
        feature name -> ``list[bytes]`` (bytes_list), float32 array (float_list) or int64 array
        (int64_list); a feature with no list set decodes as an empty float32 array.

    Raises:
        DataError: malformed protobuf.
    """
    decoders = {1: _bytes_values, 2: _float_values, 3: _int64_values}
    out: dict[str, list[bytes] | np.ndarray] = {}
    for name, (kind, start, end) in _feature_bodies(payload).items():
        out[name] = decoders.get(kind, _float_values)(payload, start, end)
    return out


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _length_delimited(field: int, body: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(body)) + body


def _bytes_list_body(values: list[bytes] | tuple[bytes, ...]) -> bytes:
    if values and all(len(v) == 1 for v in values):  # vectorised: tag 0x0A, length 1, the byte
        body = np.empty((len(values), 3), dtype=np.uint8)  # (n, 3)
        body[:, 0], body[:, 1] = 0x0A, 1
        body[:, 2] = np.frombuffer(b"".join(values), dtype=np.uint8)
        return body.tobytes()
    return b"".join(_length_delimited(1, bytes(v)) for v in values)


def encode_example(features: dict[str, Any]) -> bytes:
    """Serialize a ``tf.train.Example`` (the inverse of :func:`parse_example`).

    Args:
        features: name -> ``list[bytes]`` (bytes_list), a float array (packed float_list) or an
            integer array (packed int64_list).

    Returns:
        the protobuf bytes.
    """
    entries = []
    for name in sorted(features):
        value = features[name]
        if isinstance(value, (list, tuple)):
            kind, body = 1, _bytes_list_body(value)
        else:
            arr = np.asarray(value).reshape(-1)
            if np.issubdtype(arr.dtype, np.integer):
                kind, body = 3, b"".join(_encode_varint(int(v)) for v in arr)
            else:
                kind, body = 2, arr.astype("<f4").tobytes()
            body = _length_delimited(1, body) if arr.size else b""  # packed repeated field
        feature = _length_delimited(kind, body)
        entry = _length_delimited(1, name.encode("utf-8")) + _length_delimited(2, feature)
        entries.append(_length_delimited(1, entry))
    return _length_delimited(1, b"".join(entries))


def one_byte_strings(values: np.ndarray) -> list[bytes]:
    """Split a uint8 array (C order) into one-byte strings, as ``FixedLenFeature(tf.string)`` stores pixels."""
    data = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
    return [data[i:i + 1] for i in range(len(data))]


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


class _NpyAppender:
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
            writers: dict[str, _NpyAppender] = {}
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
                            writers[key] = _NpyAppender(folder / f"{key}.npy", arr.shape[1:], arr.dtype)
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
