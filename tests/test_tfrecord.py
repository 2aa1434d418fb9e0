"""The TensorFlow-free reader of official Multi-dSprites TFRecord files, on files built here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from locseg.data import DataError, load_split
from locseg.data import multi_dsprites as md
from locseg.data import multi_dsprites_official as official
from locseg.data import tfrecord as tfr


def _crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), independent of the library."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked_reference(data: bytes) -> int:
    crc = _crc32c_reference(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % 2**32


def _official_samples(variant: str, num: int, seed: int) -> tuple[list[dict], dict]:
    """Scenes from our generator, laid out like the official files (entity 0 = background)."""
    data = md.generate_split(variant, num, seed)
    k, c = official.NUM_ENTITIES[variant], official.CHANNELS[variant]
    samples = []
    for i in range(num):
        labels = data["labels"][i]
        mask = (labels[None] == np.arange(k)[:, None, None]).astype(np.uint8)[..., None] * 255  # (K,64,64,1)
        colour = np.concatenate([data["background"][i][None], data["colour"][i]])  # (K, 3)
        present = np.concatenate([[1.0], data["shape"][i] > 0])  # (K,)
        samples.append({
            "image": data["images"][i][..., :c],
            "mask": mask,
            "visibility": np.concatenate([[1.0], data["visibility"][i]]).astype(np.float32),
            "x": np.concatenate([[0.0], data["position"][i, :, 0]]).astype(np.float32),
            "y": np.concatenate([[0.0], data["position"][i, :, 1]]).astype(np.float32),
            "shape": np.concatenate([[0.0], data["shape"][i]]).astype(np.float32) * present,
            "scale": np.concatenate([[0.0], data["scale"][i]]).astype(np.float32),
            "orientation": np.concatenate([[0.0], data["orientation"][i]]).astype(np.float32),
            "color": colour[:, :c].astype(np.float32),
        })
    return samples, data


def _write_raw_records(path, payloads, compress=True):
    """An independent TFRecord writer (uses the reference CRC, not the library's)."""
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        for p in payloads:
            length = struct.pack("<Q", len(p))
            f.write(length + struct.pack("<I", _masked_reference(length)) + p
                    + struct.pack("<I", _masked_reference(p)))


def test_masked_crc32c_matches_reference():
    assert _crc32c_reference(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    for data in (b"", b"\x00" * 8, b"abc", bytes(range(256))):
        assert tfr.masked_crc32c(data) == _masked_reference(data)


@pytest.mark.parametrize("variant", ["colored_on_grayscale", "binarized", "colored_on_colored"])
def test_round_trip_is_exact(tmp_path, variant):
    samples, _ = _official_samples(variant, 5, seed=3)
    path = tmp_path / f"multi_dsprites_{variant}.tfrecords"
    assert official.write_example_records(path, samples, variant) == 5
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # the whole file is gzip, framing included
    back = list(official.read_records(path, variant))
    assert len(back) == 5
    k, c = official.NUM_ENTITIES[variant], official.CHANNELS[variant]
    for got, want in zip(back, samples, strict=True):
        assert got["image"].shape == (64, 64, c) and got["image"].dtype == np.uint8
        assert got["mask"].shape == (k, 64, 64, 1) and got["mask"].dtype == np.uint8
        assert got["color"].shape == (k, c) and got["color"].dtype == np.float32
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_wire_format_of_the_written_example():
    """The writer produces the official encoding: pixels as a bytes_list of one-byte strings."""
    samples, _ = _official_samples("colored_on_grayscale", 1, seed=0)
    payload = official.encode_sample(samples[0], "colored_on_grayscale")
    feats = tfr.parse_example(payload)
    assert set(feats) == {"image", "mask", "x", "y", "shape", "scale", "orientation", "visibility", "color"}
    assert isinstance(feats["image"], list) and len(feats["image"]) == 64 * 64 * 3
    assert all(len(v) == 1 for v in feats["image"])
    # A reader that keeps only the first value sees one pixel; ours decodes all of them.
    assert feats["image"][0] == samples[0]["image"].reshape(-1)[:1].tobytes()
    assert len(feats["mask"]) == 64 * 64 * 6
    # mask stored [H, W, K, 1]: value index (r * 64 + c) * K + k is mask k at (r, c)
    flat = np.frombuffer(b"".join(feats["mask"]), np.uint8)
    r, col, k = 17, 40, 2
    assert flat[(r * 64 + col) * 6 + k] == samples[0]["mask"][k, r, col, 0]
    np.testing.assert_array_equal(feats["color"], samples[0]["color"].reshape(-1))


def test_hand_built_example_with_unpacked_floats_and_generic_bytes(tmp_path):
    """Decode a record built by hand with the independent writer: unpacked float_list and
    one-byte strings encoded one field at a time (what TensorFlow writes), transposed mask."""
    k, c = 4, 1
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, c), dtype=np.uint8)
    mask_hwk = (rng.random((64, 64, k, 1)) < 0.3).astype(np.uint8) * 255  # stored layout

    def ld(field, body):
        return tfr._encode_varint(field << 3 | 2) + tfr._encode_varint(len(body)) + body

    def bytes_feature(arr):
        return ld(1, b"".join(ld(1, bytes([v])) for v in arr.reshape(-1)))

    def float_feature_unpacked(values):
        return ld(2, b"".join(b"\x0d" + struct.pack("<f", v) for v in values))

    feats = {"image": bytes_feature(image), "mask": bytes_feature(mask_hwk),
             "color": float_feature_unpacked(np.arange(k * c) / 10)}
    for i, name in enumerate(official.FLOAT_FEATURES):
        feats[name] = float_feature_unpacked(np.full(k, i, np.float32))
    payload = ld(1, b"".join(ld(1, ld(1, n.encode()) + ld(2, f)) for n, f in feats.items()))
    path = tmp_path / "hand.tfrecords"
    _write_raw_records(path, [payload, payload])
    got = list(official.read_records(path, "binarized"))
    assert len(got) == 2
    np.testing.assert_array_equal(got[0]["image"], image)
    np.testing.assert_array_equal(got[0]["mask"], np.transpose(mask_hwk, (2, 0, 1, 3)))
    np.testing.assert_allclose(got[0]["color"], (np.arange(4) / 10).reshape(4, 1).astype(np.float32))
    np.testing.assert_array_equal(got[1]["orientation"], np.full(k, 4, np.float32))


def test_uncompressed_files_are_read_too(tmp_path):
    samples, _ = _official_samples("binarized", 2, seed=1)
    path = tmp_path / "plain.tfrecords"
    official.write_example_records(path, samples, "binarized", compress=False)
    assert path.read_bytes()[:2] != b"\x1f\x8b"
    assert len(list(official.read_records(path, "binarized"))) == 2


def _stream_bytes(samples, variant):
    return b"".join(
        struct.pack("<Q", len(p)) + struct.pack("<I", _masked_reference(struct.pack("<Q", len(p)))) + p
        + struct.pack("<I", _masked_reference(p))
        for p in (official.encode_sample(s, variant) for s in samples))


def test_crc_mismatch_is_detected_with_record_index(tmp_path):
    samples, _ = _official_samples("binarized", 3, seed=2)
    raw = bytearray(_stream_bytes(samples, "binarized"))
    rec = len(raw) // 3
    raw[rec + 12 + 500] ^= 0x01  # flip one payload bit of record 1
    path = tmp_path / "bad_crc.tfrecords"
    path.write_bytes(gzip.compress(bytes(raw)))
    it = official.read_records(path, "binarized")
    next(it)  # record 0 is fine
    with pytest.raises(DataError, match="CRC mismatch in the payload of record 1"):
        next(it)
    raw = bytearray(_stream_bytes(samples, "binarized"))
    raw[2 * rec + 9] ^= 0xFF  # corrupt the length CRC of record 2
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="CRC mismatch in the length of record 2"):
        list(official.read_records(path, "binarized"))


def test_truncation_and_bad_gzip_are_detected(tmp_path):
    samples, _ = _official_samples("binarized", 2, seed=2)
    raw = _stream_bytes(samples, "binarized")
    path = tmp_path / "short.tfrecords"
    path.write_bytes(gzip.compress(raw[:-100]))  # record 1 cut inside its payload
    with pytest.raises(DataError, match=r"truncated file: record 1 payload"):
        list(official.read_records(path, "binarized"))
    path.write_bytes(gzip.compress(raw[: len(raw) // 2 + 5]))  # cut inside record 1's header
    with pytest.raises(DataError, match=r"truncated file: record 1"):
        list(official.read_records(path, "binarized"))
    whole = gzip.compress(raw)
    path.write_bytes(whole[: len(whole) // 2])  # the gzip stream itself is cut
    with pytest.raises(DataError, match="gzip"):
        list(official.read_records(path, "binarized"))
    path.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    with pytest.raises(DataError, match="gzip"):
        list(official.read_records(path, "binarized"))


def test_convert_matches_the_generator(tmp_path):
    """Converting the official layout of generated scenes gives back the generator's arrays."""
    variant = "colored_on_grayscale"
    samples, data = _official_samples(variant, 7, seed=5)
    path = tmp_path / "md.tfrecords"
    official.write_example_records(path, samples, variant)
    info = official.convert(path, variant, tmp_path / "ds", num_train=None, num_test=3, progress=False)
    assert info["counts"] == {"test": 3, "train": 4}
    test, train = load_split(tmp_path / "ds", "test"), load_split(tmp_path / "ds", "train")
    assert train["meta"]["first_record"] == 3 and train["meta"]["max_objects"] == 5
    for split, rows in ((test, slice(0, 3)), (train, slice(3, 7))):
        for key in ("images", "labels", "visibility", "centres", "shape", "scale", "orientation",
                    "position", "colour", "background"):
            assert split[key].dtype == data[key].dtype, key
            np.testing.assert_array_equal(split[key], data[key][rows], err_msg=key)
        np.testing.assert_array_equal(split["num_objects"], data["visibility"][rows].sum(1))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]


def test_convert_binarized_expands_to_three_channels_and_counts(tmp_path):
    samples, data = _official_samples("binarized", 6, seed=8)
    path = tmp_path / "b.tfrecords"
    official.write_example_records(path, samples, "binarized")
    official.convert(path, "binarized", tmp_path / "ds", num_train=2, num_test=3, progress=False)
    train = load_split(tmp_path / "ds", "train")
    assert train["images"].shape == (2, 64, 64, 3) and train["colour"].shape == (2, 3, 3)
    np.testing.assert_array_equal(train["images"], data["images"][3:5])
    with pytest.raises(DataError, match="too few records"):
        official.convert(path, "binarized", tmp_path / "ds2", num_train=10, num_test=3, progress=False)
    assert not (tmp_path / "ds2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds2")]
    with pytest.raises(DataError, match="not empty"):
        official.convert(path, "binarized", tmp_path / "ds", num_test=3, progress=False)
    with pytest.raises(ValueError, match="unknown Multi-dSprites variant"):
        official.convert(path, "tetrominoes", tmp_path / "ds3", progress=False)
    with pytest.raises(ValueError, match="num_test"):
        official.convert(path, "binarized", tmp_path / "ds3", num_test=0, progress=False)
    with pytest.raises(DataError, match="not found"):
        official.convert(tmp_path / "missing.tfrecords", "binarized", tmp_path / "ds3", progress=False)


def test_wrong_variant_gives_a_clear_error(tmp_path):
    samples, _ = _official_samples("binarized", 1, seed=0)
    path = tmp_path / "b.tfrecords"
    official.write_example_records(path, samples, "binarized")
    with pytest.raises(DataError, match=r"record 0: feature 'image' has 4096 one-byte strings, expected 12288"):
        list(official.read_records(path, "colored_on_grayscale"))
