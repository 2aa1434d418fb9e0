"""Dataset figures: label colouring and the sample grid PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from locseg.data import load_split
from locseg.data import multi_dsprites as md
from locseg.viz import PALETTE, colorize_labels, dataset_grid


def test_colorize_labels_palette():
    labels = np.arange(20).reshape(1, 4, 5)  # (1, 4, 5)
    out = colorize_labels(labels)
    assert out.shape == (1, 4, 5, 3) and out.dtype == np.uint8
    flat = out.reshape(-1, 3)
    assert (flat[0] == 0).all()  # background black
    assert len({tuple(c) for c in flat[1:16]}) == 15  # labels 1..15 all distinct
    assert all(tuple(c) != (0, 0, 0) for c in flat[1:])
    np.testing.assert_array_equal(flat[16], flat[1])  # then the colours cycle
    with pytest.raises(ValueError, match="non-negative"):
        colorize_labels(np.array([[-1]]))


def test_palette_colours_are_well_separated():
    d = np.linalg.norm(PALETTE[:, None].astype(float) - PALETTE[None].astype(float), axis=-1)
    assert d[~np.eye(len(PALETTE), dtype=bool)].min() > 60


def test_dataset_grid_png(tmp_path):
    md.generate(tmp_path / "ds", "colored_on_grayscale", num_train=20, num_test=4, seed=0, progress=False)
    data = load_split(tmp_path / "ds", "train")
    out = dataset_grid(data, tmp_path / "fig" / "grid.png", num=16, seed=0, title="Multi-dSprites")
    assert out.exists()
    png = np.asarray(Image.open(out).convert("RGB"))  # (H, W, 3)
    assert png.shape[1] > png.shape[0] > 200  # 8 columns, 2 rows of (image, labels) pairs
    # The label maps are drawn with the palette: label 1's colour shows up as solid pixels.
    colours = {tuple(c) for c in png.reshape(-1, 3)[::3]}
    assert tuple(PALETTE[1]) in colours and tuple(PALETTE[2]) in colours
    # Fewer samples than asked: shows them all, without labels when the split has none.
    small = dataset_grid({"images": data["images"][:3]}, tmp_path / "small.png", num=16)
    assert Image.open(small).size[0] < Image.open(out).size[0]
    with pytest.raises(ValueError, match="num"):
        dataset_grid(data, tmp_path / "x.png", num=0)
