"""Montezuma's Revenge evaluation: the per-object location table, baselines and segment at 210x160."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from locseg import config as config_lib
from locseg.cli import main
from locseg.data import montezuma as M
from locseg.data import write_split
from locseg.inference import object_locations
from locseg.models import build_model
from locseg.segment import segment_to_npz
from locseg.types import mask_locations

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "montezuma.yaml"


@pytest.fixture(scope="module")
def mz_split(tmp_path_factory):
    """A 12-frame Montezuma test split (seed 0) in the dataset layout, with its meta."""
    pytest.importorskip("ale_py")
    arrays = M.collect_split(12, seed=0, spread=48)
    root = tmp_path_factory.mktemp("mz")
    write_split(root / "test", {k: v for k, v in arrays.items() if k != "meta"},
                {"dataset": "montezuma", "split": "test", "objects": list(M.OBJECTS), "max_objects": 9})
    return root, arrays


def test_object_locations_exact_and_partial():
    true = np.array([[[0.2, 0.2], [0.8, 0.8]], [[0.3, 0.3], [np.nan, np.nan]]])  # (2, 2, 2)
    visible = np.array([[True, True], [True, False]])
    pred = np.array([[[0.8, 0.9], [0.2, 0.2], [0.5, 0.5]], [[0.5, 0.5], [0.3, 0.4], [0.9, 0.9]]])  # (2, 3, 2)
    out = object_locations(true, visible, pred, ["a", "b"], {"a": (0.1, 0.9)})
    assert out["loc_a_true_y"] == pytest.approx(0.25) and out["loc_a_found_x"] == pytest.approx(0.3)
    assert out["loc_a_error"] == pytest.approx(0.05) and out["loc_a_error_defined"] == 2
    assert out["loc_b_found_y"] == pytest.approx(0.8) and out["loc_b_error"] == pytest.approx(0.1)
    assert out["loc_b_error_defined"] == 1
    assert (out["loc_a_paper_y"], out["loc_a_paper_x"]) == (0.1, 0.9) and "loc_b_paper_y" not in out


def test_evaluate_prints_and_writes_the_location_table(mz_split, tmp_path, capsys):
    root, arrays = mz_split
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--baseline", "connected-components-nonblack", "--num-slots", "10", "--data",
                 str(root), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    for key in ("fg_ari", "ari", "ami", "msc", "sc", "location_error", "num_images"):
        assert key in scores  # the keys of every dataset are unchanged
    assert scores["loc_agent_paper_y"] == 0.231 and "loc_rope_paper_y" not in scores
    visible = arrays["visibility"]  # (12, 9)
    for j, name in enumerate(M.OBJECTS):
        assert scores[f"loc_{name}_error_defined"] == visible[:, j].sum()
        if visible[:, j].any():
            assert scores[f"loc_{name}_true_y"] == pytest.approx(np.nanmean(arrays["centres"][visible[:, j], j, 0]))
    # the key is a yellow component of its own: its matched centre is exact
    if visible[:, 2].any():
        assert scores["loc_key_error"] < 0.01
    printed = capsys.readouterr().out
    assert "paper Table 2" in printed and "bottom_right_ladder" in printed and "(0.595, 0.827)" in printed
    assert "loc_agent" not in printed  # the table, not 70 lines of keys


def test_one_segment_baseline_scores_zero(mz_split, tmp_path):
    root, _ = mz_split
    out = tmp_path / "one.json"
    assert main(["evaluate", "--baseline", "one-segment", "--num-slots", "10", "--data", str(root),
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ami"] == pytest.approx(0.0, abs=1e-9)


def test_segment_takes_raw_frames_and_answers_at_full_size(mz_split, tmp_path):
    _, arrays = mz_split
    frames = arrays["images"][:3]  # (3, 210, 160, 3) raw emulator frames
    np.save(tmp_path / "frames.npy", frames)
    cfg = config_lib.load(CONFIG, ["data.image_size=32", "model.segmenter.channels=[4,8]"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size)
    segment_to_npz(model, tmp_path / "frames.npy", tmp_path / "out.npz", cfg.data.image_size, progress=False)
    z = np.load(tmp_path / "out.npz")
    K = cfg.model.segmenter.num_slots
    assert z["labels"].shape == (3, 210, 160) and z["masks"].shape == (3, K, 210, 160)
    np.testing.assert_allclose(z["masks"].sum(1), 1.0, atol=1e-5)
    # locations are mask centroids over the full 210x160 frame: pixel (i, j) at ((i+0.5)/210, (j+0.5)/160)
    expected = mask_locations(torch.from_numpy(z["masks"]).double()).numpy()  # (3, K, 2)
    np.testing.assert_allclose(z["locations"], expected, atol=1e-4)
    assert z["areas"].sum(1) == pytest.approx(np.full(3, 210 * 160), rel=1e-4)
