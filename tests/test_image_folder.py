"""A folder of your own images (any size, PNG/JPEG) with optional masks: train, evaluate, segment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locseg import config as config_lib
from locseg.cli import main
from locseg.data import DataError, load_split, resolve_dataset
from locseg.data import image_folder as IF
from locseg.train import fit

TINY = ["train.max_steps=2", "train.batch_size=4", "train.log_every=1", "train.eval_every=0",
        "train.eval_images=4", "train.checkpoint_every=0", "train.warmup_steps=1", "data.image_size=32",
        "model.segmenter.num_slots=3", "model.segmenter.latent_dim=4", "model.segmenter.channels=[4,8]"]


def make_folder(root: Path, n: int = 6, masks: bool = True) -> None:
    """Images of mixed sizes and formats; masks with two objects (values 40 and 200) on 0."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    for i in range(n):
        h, w = (40 + 7 * i, 60 - 3 * i)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[5:20, 5:20] = 40
        mask[h - 15:h - 3, w - 15:w - 3] = 200
        img[mask == 40] = (255, 0, 0)
        Image.fromarray(img).save(root / "images" / (f"im{i}.png" if i % 2 else f"im{i}.jpg"))
        if masks:
            Image.fromarray(mask).save(root / "masks" / f"im{i}.png")


def test_relabel_and_rgb_masks():
    assert IF.relabel(np.array([[0, 9, 9], [3, 0, 9]])).tolist() == [[0, 2, 2], [1, 0, 2]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, 1] = (0, 0, 255)
    values = IF.mask_values(Image.fromarray(rgb))
    assert (values == 0).sum() == 2 and len(np.unique(values)) == 3


def test_convert_resizes_and_relabels(tmp_path):
    make_folder(tmp_path / "f")
    info = IF.convert(tmp_path / "f", tmp_path / "out", size=24, progress=False)
    assert info["counts"] == {"train": 6, "test": 6} and info["masks"]
    split = load_split(tmp_path / "out", "test")
    assert split["images"].shape == (6, 24, 24, 3) and split["labels"].shape == (6, 24, 24)
    assert set(np.unique(split["labels"])) == {0, 1, 2}
    assert split["meta"]["iou"] == "foreground" and split["visibility"].shape == (6, 2)
    assert sorted(split["name"].tolist()) == sorted(f"im{i}.{'png' if i % 2 else 'jpg'}" for i in range(6))
    # the test split shares the train split's arrays (hard links)
    assert (tmp_path / "out" / "test" / "images.npy").stat().st_ino == \
        (tmp_path / "out" / "train" / "images.npy").stat().st_ino


def test_train_evaluate_segment_on_a_folder(tmp_path, capsys):
    folder = tmp_path / "f"
    make_folder(folder)
    cfg = config_lib.load(overrides=TINY)
    result = fit(cfg, folder, tmp_path / "run", progress=False)
    assert result.step == 2
    for key in ("iou", "ari", "fg_ari", "num_images"):
        assert key in result.metrics
    cached = resolve_dataset(folder)  # the conversion training made (32 px) is reused
    assert load_split(cached, "train")["images"].shape[1:3] == (32, 32)
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    assert main(["evaluate", "--checkpoint", ckpt, "--data", str(folder), "--json", str(tmp_path / "m.json")]) == 0
    assert "iou" in capsys.readouterr().out
    assert main(["segment", "--checkpoint", ckpt, "--input", str(folder), "--out", str(tmp_path / "s.npz")]) == 0
    assert len(np.load(tmp_path / "s.npz")["names"]) == 6
    # adding an image invalidates the cache
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "images" / "new.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "masks" / "new.png")
    assert load_split(folder, "train", image_size=32)["images"].shape[0] == 7


def test_folder_without_masks_and_split_form(tmp_path):
    make_folder(tmp_path / "plain", masks=False)
    split = load_split(tmp_path / "plain", "train")
    assert split["images"].shape == (6, 128, 128, 3) and "labels" not in split
    make_folder(tmp_path / "s" / "train", n=4)
    make_folder(tmp_path / "s" / "test", n=2)
    out = resolve_dataset(tmp_path / "s", 32)
    assert load_split(out, "train")["images"].shape[0] == 4 and load_split(out, "test")["images"].shape[0] == 2


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "cannot read image"),
    ("missing_mask", "missing mask for im3.png"),
    ("wrong_size", "mask .* is"),
    ("empty", "no image files"),
])
def test_errors_leave_nothing(tmp_path, damage, message):
    folder = tmp_path / "f"
    make_folder(folder)
    if damage == "corrupt":
        p = folder / "images" / "im2.jpg"
        p.write_bytes(p.read_bytes()[:150])
    elif damage == "missing_mask":
        (folder / "masks" / "im3.png").unlink()
    elif damage == "wrong_size":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "masks" / "im1.png")
    else:
        for p in (folder / "images").iterdir():
            p.unlink()
    with pytest.raises(DataError, match=message):
        IF.convert(folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_wrong_root_is_one_line(tmp_path, capsys):
    with pytest.raises(DataError, match="not found"):
        IF.convert(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="no images/ folder"):
        IF.convert(tmp_path / "x", tmp_path / "out")
    assert main(["convert", "image-folder", str(tmp_path / "x"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no images/ folder" in err
