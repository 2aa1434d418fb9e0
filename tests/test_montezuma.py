"""Montezuma's Revenge frames: collection, labels against RAM, the agent on a ladder, CLI errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from locseg.cli import main
from locseg.data import DataError, load_split
from locseg.data import montezuma as M


@pytest.fixture(scope="module")
def frames():
    """160 exploring-policy frames (seed 0) with their labels: about a second."""
    pytest.importorskip("ale_py")
    return M.collect_split(160, seed=0)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_collect_shapes_and_rule(frames):
    n, m = 160, len(M.OBJECTS)
    assert frames["images"].shape == (n, 210, 160, 3) and frames["images"].dtype == np.uint8
    assert frames["labels"].shape == (n, 210, 160) and frames["labels"].dtype == np.uint8
    assert frames["centres"].shape == (n, m, 2) and frames["centres"].dtype == np.float32
    assert frames["visibility"].shape == (n, m) and frames["visibility"].dtype == bool
    assert frames["ram"].shape == (n, 128) and frames["ram"].dtype == np.uint8
    assert (frames["ram"][:, M.RAM_ROOM] == M.FIRST_ROOM).all()  # never another room
    assert frames["labels"].max() <= m
    assert not frames["labels"][:, : M.ROOM_TOP].any()  # score, lives, inventory are background
    # Every object is in the first frames (the key is taken much later), and centres follow visibility.
    assert frames["visibility"].all()
    assert np.isfinite(frames["centres"]).all() and (frames["centres"] > 0).all() and (frames["centres"] < 1).all()
    # Static objects: their pixels stay inside their fixed boxes and have their colour.
    for name, ((top, bottom, left, right), colour) in M.STATIC_BOXES.items():
        mask = frames["labels"] == M.OBJECTS.index(name) + 1  # (N, H, W)
        assert not mask[:, :top].any() and not mask[:, bottom:].any()
        assert not mask[:, :, :left].any() and not mask[:, :, right:].any()
        assert (frames["images"][mask] == colour).all()


def test_labels_agree_with_ram(frames):
    labels, ram = frames["labels"], frames["ram"]
    columns, bottom = M.agent_columns_rows(ram)  # (N, 2), (N,)
    dx, dy, skull = [], [], []
    for i in range(len(labels)):
        top, last, left, right = _bbox(labels[i] == 1)
        assert 19 <= last - top + 1 <= 20  # the whole agent, never a death sprite
        dx += [left - columns[i, 0], right - columns[i, 1]]
        dy.append(last - bottom[i])
        s_top, s_last, s_left, _ = _bbox(labels[i] == 2)
        skull.append(s_left - int(ram[i, M.RAM_SKULL_X]))
        assert s_last == 178  # the skull rolls on the bottom floor
    dx, dy = np.abs(dx), np.abs(dy)
    assert np.mean(dx <= 2) > 0.95 and dx.max() <= 8  # a frame's RAM can lead the picture by a frame
    assert np.mean(dy <= 2) > 0.9 and dy.max() <= 10
    assert set(skull) <= {32, 33}
    # Centres are the labels' pixel centroids, normalised to the full frame.
    rows, cols = np.nonzero(labels[0] == 1)
    np.testing.assert_allclose(frames["centres"][0, 0], [(rows + 0.5).mean() / 210, (cols + 0.5).mean() / 160],
                               rtol=1e-5)


def test_deterministic_for_a_seed(frames):
    again = M.collect_split(24, seed=0)
    np.testing.assert_array_equal(again["images"], frames["images"][:24])
    np.testing.assert_array_equal(again["ram"], frames["ram"][:24])
    other = M.collect_split(24, seed=1)
    assert not np.array_equal(other["ram"], again["ram"])
    spread = M.collect_split(6, seed=0, spread=24)  # the last of each 4 of the 24 candidates
    np.testing.assert_array_equal(spread["images"], again["images"][3::4])


def test_agent_on_ladder_keeps_both_labels():
    """Climbing down the middle ladder from the spawn point: the agent is drawn over the ladder."""
    pytest.importorskip("ale_py")
    env = M._make_env(0)
    ale = env.unwrapped.ale
    for _ in range(M.WARMUP_FRAMES):
        ale.act(0)
    down = next(a for a in ale.getMinimalActionSet() if a.name == "DOWN")
    for _ in range(20):  # half way down
        ale.act(down)
    image = ale.getScreenRGB()
    env.close()
    labels = M.label_frames(image[None])[0]
    (top, bottom, left, right), _ = M.STATIC_BOXES["middle_ladder"]
    agent, ladder = labels == 1, labels == M.OBJECTS.index("middle_ladder") + 1
    a_top, a_last, a_left, a_right = _bbox(agent)
    assert top <= a_top and a_last < bottom and left <= a_left and a_right < right  # agent inside the ladder's box
    assert 19 <= a_last - a_top + 1 <= 20 and agent.sum() >= 80  # the whole agent, not cut by the ladder
    in_box = np.zeros_like(agent)
    in_box[top:bottom, left:right] = True
    assert ladder[in_box & ~agent].sum() > 100  # ladder above and below the agent
    assert ladder[:a_top].any() and ladder[a_last + 1:].any()
    for colour in M.AGENT_COLOURS:  # every agent-coloured pixel is the agent's
        assert agent[(image == colour).all(-1) & (np.arange(210) >= M.ROOM_TOP)[:, None]].all()


def test_label_frames_rejects_wrong_shape():
    with pytest.raises(DataError, match="210, 160, 3"):
        M.label_frames(np.zeros((2, 64, 64, 3), np.uint8))


def test_generate_cli_end_to_end(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ale_py")
    monkeypatch.setattr(M, "SPREAD_FRAMES", 40)  # explore 40 frames per split, not 10,000
    out = tmp_path / "mz"
    assert main(["generate", "montezuma", "--frames", "12", "--num-test", "4", "--seed", "3", "--out", str(out),
                 "--no-progress"]) == 0
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train["images"].shape == (12, 210, 160, 3) and test["labels"].shape == (4, 210, 160)
    assert train["meta"]["objects"] == list(M.OBJECTS) and train["meta"]["dataset"] == "montezuma"
    assert test["meta"]["spread"] == 40
    # The split reproduces from its meta: 4 evenly spaced frames of 40.
    again = M.collect_split(4, test["meta"]["split_seed"], spread=40)
    np.testing.assert_array_equal(again["images"], test["images"])
    np.testing.assert_array_equal(again["labels"], test["labels"])
    assert not np.array_equal(train["images"][:4], test["images"])  # independent seeds
    assert [p.name for p in tmp_path.iterdir()] == ["mz"]  # no temporary directory left behind
    assert "12 train + 4 test frames" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["--frames", "0"], "frames must be a positive integer"),
    (["--frames", "8", "--num-test", "0"], "num_test must be a positive integer"),
    ([], "needs --frames"),
])
def test_generate_bad_arguments_one_line(tmp_path, capsys, argv, expected):
    assert main(["generate", "montezuma", "--out", str(tmp_path / "g"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "g").exists()


def test_frames_refused_for_multi_dsprites(tmp_path, capsys):
    assert main(["generate", "multi-dsprites", "--frames", "8", "--out", str(tmp_path / "g")]) == 2
    assert "--frames is for montezuma" in capsys.readouterr().err


def test_missing_extra_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py raises ImportError
    with pytest.raises(DataError, match=r"pip install 'locseg\[atari\]'"):
        M.collect_split(4, seed=0)
    assert main(["generate", "montezuma", "--frames", "8", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'locseg[atari]'" in err and "\n" not in err
    assert not (tmp_path / "g").exists()
