"""Multi-dSprites generator: determinism, label/image consistency, occlusion, statistics, writing."""

from __future__ import annotations

import colorsys
import json
import os

import numpy as np
import pytest

from locseg.data import DataError, load_split
from locseg.data import dsprites as D
from locseg.data import multi_dsprites as md


@pytest.fixture(scope="module", params=md.VARIANTS)
def split(request):
    return request.param, md.generate_split(request.param, 300, seed=11)


def test_determinism():
    a = md.generate_split("colored_on_grayscale", 50, seed=1)
    b = md.generate_split("colored_on_grayscale", 50, seed=1)
    c = md.generate_split("colored_on_grayscale", 50, seed=2)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert not np.array_equal(a["images"], c["images"])
    # The chunk size does not change the data (all draws are made up front).
    old = md.CHUNK
    try:
        md.CHUNK = 7
        d = md.generate_split("colored_on_grayscale", 50, seed=1)
    finally:
        md.CHUNK = old
    for key in a:
        assert a[key].tobytes() == d[key].tobytes(), key


def test_shapes_and_dtypes(split):
    variant, d = split
    n, m = 300, md.SPECS[variant].max_objects
    expected = {
        "images": ((n, 64, 64, 3), np.uint8), "labels": ((n, 64, 64), np.uint8),
        "visibility": ((n, m), np.bool_), "centres": ((n, m, 2), np.float32),
        "shape": ((n, m), np.int8), "scale": ((n, m), np.float32), "orientation": ((n, m), np.float32),
        "position": ((n, m, 2), np.float32), "colour": ((n, m, 3), np.float32),
        "background": ((n, 3), np.float32), "num_objects": ((n,), np.uint8),
    }
    assert set(d) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert d[key].shape == shape and d[key].dtype == dtype, key


def test_object_counts_and_latents(split):
    variant, d = split
    spec = md.SPECS[variant]
    count = d["num_objects"].astype(int)
    assert count.min() == spec.min_objects and count.max() == spec.max_objects  # 300 draws hit both ends
    present = d["shape"] > 0
    np.testing.assert_array_equal(present.sum(1), count)
    np.testing.assert_array_equal(present, np.arange(spec.max_objects) < count[:, None])  # slots fill in order
    assert set(np.unique(d["shape"][present])) == {1, 2, 3}
    assert np.isin(d["scale"][present], D.SCALES.astype(np.float32)).all()
    assert np.isin(d["orientation"][present], D.ORIENTATIONS.astype(np.float32)).all()
    assert np.isin(d["position"][present], D.POSITIONS.astype(np.float32)).all()
    for key in ("scale", "orientation", "position", "colour"):
        assert not d[key][~present].any(), key  # absent slots are zero
    assert d["labels"].max() <= count.max()


def test_colours_per_variant(split):
    variant, d = split
    present = d["shape"] > 0
    colour, bg = d["colour"][present], d["background"]
    assert colour.min() >= 0 and colour.max() <= 1
    if variant == "binarized":
        assert (colour == 1).all() and (bg == 0).all()
    elif variant == "colored_on_grayscale":
        assert (bg[:, 0] == bg[:, 1]).all() and (bg[:, 1] == bg[:, 2]).all()
        hsv = np.array([colorsys.rgb_to_hsv(*c) for c in colour.astype(np.float64)])
        assert hsv[:, 1].min() >= md.HSV_SATURATION[0] - 1e-5 and hsv[:, 2].min() >= md.HSV_VALUE[0] - 1e-5
        assert np.ptp(hsv[:, 0]) > 0.9  # hues over the whole circle
    else:
        assert np.ptp(bg, 0).min() > 0.8  # RGB backgrounds, every channel varies


def test_hsv_to_rgb_matches_colorsys():
    rng = np.random.default_rng(0)
    hsv = rng.random((200, 3))
    want = np.array([colorsys.hsv_to_rgb(*x) for x in hsv])
    np.testing.assert_allclose(md.hsv_to_rgb(hsv), want, atol=1e-12)


def test_labels_are_consistent_with_the_image(split):
    variant, d = split
    m = md.SPECS[variant].max_objects
    palette = np.rint(np.concatenate([d["background"][:, None], d["colour"]], 1) * 255).astype(np.uint8)
    for i in range(0, 300, 7):
        for j in range(m + 1):
            pix = d["images"][i][d["labels"][i] == j]  # (P, 3)
            assert (pix == palette[i, j]).all(), (i, j)


def test_occlusion_follows_painting_order():
    """Re-render each sprite alone: a pixel's label is the last sprite (in slot order) covering it."""
    d = md.generate_split("colored_on_grayscale", 40, seed=4)
    present = d["shape"] > 0
    img, slot = np.nonzero(present)
    alone = D.render(d["shape"][img, slot], d["scale"][img, slot], d["orientation"][img, slot],
                     d["position"][img, slot, 0], d["position"][img, slot, 1])  # (S, 64, 64)
    expected = np.zeros((40, 64, 64), np.uint8)
    for s in range(len(img)):  # reference painter: one sprite at a time, in order
        expected[img[s]][alone[s]] = slot[s] + 1
    np.testing.assert_array_equal(d["labels"], expected)
    # Some sprites really do overlap and get covered (otherwise the test proves little).
    covered = sum((alone[s] & (expected[img[s]] != slot[s] + 1)).any() for s in range(len(img)))
    assert covered > 5


def test_visibility_and_centres_match_the_label_map(split):
    variant, d = split
    m = md.SPECS[variant].max_objects
    for i in range(300):
        for j in range(m):
            rows, cols = np.nonzero(d["labels"][i] == j + 1)
            assert d["visibility"][i, j] == (rows.size > 0)
            if rows.size:
                want = [(rows.mean() + 0.5) / 64, (cols.mean() + 0.5) / 64]
                np.testing.assert_allclose(d["centres"][i, j], want, rtol=0, atol=1e-6)
            else:
                assert np.isnan(d["centres"][i, j]).all()
    # Absent slots are never visible.
    assert not d["visibility"][d["shape"] == 0].any()


def test_fully_occluded_objects_are_invisible():
    d = md.generate_split("colored_on_grayscale", 3000, seed=0)
    hidden = (d["shape"] > 0) & ~d["visibility"]
    assert hidden.any()  # a few sprites end up completely covered in 3000 scenes
    i, j = np.argwhere(hidden)[0]
    assert not (d["labels"][i] == j + 1).any() and np.isnan(d["centres"][i, j]).all()


def test_generate_writes_loadable_splits(tmp_path):
    out = tmp_path / "md"
    info = md.generate(out, "colored_on_colored", num_train=30, num_test=20, seed=3, progress=False)
    assert info["counts"] == {"train": 30, "test": 20} and info["seconds"] > 0
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train["images"].shape == (30, 64, 64, 3) and test["labels"].shape == (20, 64, 64)
    assert train["centres"].dtype == np.float32 and train["visibility"].shape == (30, 4)
    meta = train["meta"]
    assert meta["variant"] == "colored_on_colored" and meta["seed"] == 3 and meta["count"] == 30
    assert meta["max_objects"] == 4 and meta["generator_version"] == md.GENERATOR_VERSION
    assert train["meta"]["split_seed"] != test["meta"]["split_seed"]
    # The recorded split seed reproduces the split.
    again = md.generate_split("colored_on_colored", 20, test["meta"]["split_seed"])
    np.testing.assert_array_equal(test["images"], again["images"])
    assert json.loads((out / "train" / "meta.json").read_text()) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md"]  # no temporary leftovers


def test_generate_refuses_non_empty_directory_unless_overwrite(tmp_path):
    out = tmp_path / "md"
    md.generate(out, "binarized", 5, 5, seed=0, progress=False)
    first = load_split(out, "train")["images"].copy()
    with pytest.raises(DataError, match="not empty.*overwrite"):
        md.generate(out, "binarized", 5, 5, seed=1, progress=False)
    md.generate(out, "binarized", 5, 5, seed=1, overwrite=True, progress=False)
    assert not np.array_equal(load_split(out, "train")["images"], first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md"]
    (tmp_path / "empty").mkdir()
    md.generate(tmp_path / "empty", "binarized", 2, 2, seed=0, progress=False)  # empty dir is fine


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"variant": "tetrominoes"}, ValueError, "unknown Multi-dSprites variant.*colored_on_grayscale"),
        ({"num_train": 0}, ValueError, "num_train must be a positive integer"),
        ({"num_test": -3}, ValueError, "num_test must be a positive integer"),
        ({"num_train": 2.5}, ValueError, "num_train"),
    ],
)
def test_bad_inputs(tmp_path, kwargs, error, message):
    args = {"out_dir": tmp_path / "md", "variant": "binarized", "num_train": 2, "num_test": 2, "seed": 0,
            "progress": False} | kwargs
    with pytest.raises(error, match=message):
        md.generate(**args)
    assert not (tmp_path / "md").exists()


def test_generate_split_bad_inputs():
    with pytest.raises(ValueError, match="unknown Multi-dSprites variant"):
        md.generate_split("nope", 3, 0)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        md.generate_split("binarized", 0, 0)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataError, match="cannot write"):
            md.generate(locked / "md", "binarized", 2, 2, seed=0, progress=False)
    finally:
        locked.chmod(0o700)


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        md.generate(tmp_path / "file", "binarized", 2, 2, seed=0, progress=False)
    with pytest.raises(DataError, match="cannot write"):
        md.generate(tmp_path / "file" / "md", "binarized", 2, 2, seed=0, progress=False)


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch, exc):
    calls = []
    real = md.write_split

    def failing_write_split(folder, arrays, meta):
        calls.append(folder)
        if len(calls) == 2:  # train is written, test fails
            raise exc
        real(folder, arrays, meta)

    monkeypatch.setattr(md, "write_split", failing_write_split)
    with pytest.raises(type(exc)):
        md.generate(tmp_path / "md", "binarized", 4, 4, seed=0, progress=False)
    assert len(calls) == 2 and calls[0].exists() is False  # the half-written temp dir is gone
    assert list(tmp_path.iterdir()) == []
    # With overwrite, an existing dataset survives a failed regeneration untouched.
    monkeypatch.setattr(md, "write_split", real)
    md.generate(tmp_path / "md", "binarized", 4, 4, seed=0, progress=False)
    before = load_split(tmp_path / "md", "test")["images"].copy()
    calls.clear()
    monkeypatch.setattr(md, "write_split", failing_write_split)
    with pytest.raises(type(exc)):
        md.generate(tmp_path / "md", "binarized", 4, 4, seed=9, overwrite=True, progress=False)
    np.testing.assert_array_equal(load_split(tmp_path / "md", "test")["images"], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md"]
