"""TFRecord files and ``tf.train.Example`` protobufs without TensorFlow: a generic codec.

File format (what TensorFlow writes with ``compression_type="GZIP"``):

- The whole file is one gzip stream; the record framing is inside it. Each record is
  ``uint64 length`` (little-endian), ``uint32 masked_crc32c(length bytes)``, ``payload``,
  ``uint32 masked_crc32c(payload)``, where ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8``
  (mod 2**32). Uncompressed files (no gzip magic) are read too.
- Each payload is a ``tf.train.Example`` protobuf: ``Example{features: Features = 1}``,
  ``Features{feature: map<string, Feature> = 1}``, ``Feature{oneof bytes_list = 1,
  float_list = 2, int64_list = 3}``, each list a ``repeated value = 1`` (floats and ints usually
  packed). :func:`parse_example` is a small wire-format parser for exactly this, and
  :func:`encode_example` its inverse.

Nothing here knows a dataset: :mod:`locseg.data.multi_dsprites_official` decodes DeepMind's
Multi-dSprites records with it.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c
import numpy as np

from locseg.data import DataError

log = logging.getLogger(__name__)


_MASK_DELTA = 0xA282EAD8


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


