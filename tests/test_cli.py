"""The command line end to end on tiny generated data, and its one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from locseg.cli import main

TRAIN = ["train.max_steps=4", "train.batch_size=4", "train.eval_every=2", "train.eval_images=8",
         "train.checkpoint_every=2", "train.log_every=1", "model.segmenter.num_slots=3",
         "model.segmenter.channels=[4,8]", "model.segmenter.latent_dim=4", "data.image_size=32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    assert main(["generate", "multi-dsprites", "--num-train", "24", "--num-test", "8", "--seed", "1",
                 "--out", str(data), "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--no-progress", "--stop-at", "2",
                 *TRAIN]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--no-progress", "--resume",
                 *TRAIN]) == 0
    return root


def test_train_writes_run_directory(run):
    r = run / "run"
    assert (r / "checkpoint.pt").exists() and (r / "config.yaml").exists()
    assert len((r / "train.csv").read_text().strip().splitlines()) == 1 + 4
    assert list((r / "figures").glob("*.png"))


def test_evaluate_json(run, capsys):
    out = run / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(run / "run" / "checkpoint.pt"), "--data", str(run / "data"),
                 "--split", "test", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    for key in ("fg_ari", "ari", "msc", "sc", "location_error", "num_images"):
        assert key in scores
    assert scores["num_images"] == 8
    assert "fg_ari" in capsys.readouterr().out


def test_segment_npy_folder_and_file(run, tmp_path):
    ckpt = str(run / "run" / "checkpoint.pt")
    arr = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    assert main(["segment", "--checkpoint", ckpt, "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "a.npz"), "--png", str(tmp_path / "png")]) == 0
    res = np.load(tmp_path / "a.npz")
    assert res["labels"].shape == (3, 40, 50) and res["masks"].shape == (3, 3, 40, 50)
    assert res["locations"].shape == (3, 3, 2) and res["areas"].shape == (3, 3)
    assert np.allclose(res["masks"].sum(1), 1, atol=1e-4)
    assert np.allclose(res["areas"].sum(1), 40 * 50, rtol=1e-4)
    assert len(list((tmp_path / "png").glob("*.png"))) == 3
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(arr[0]).save(folder / "a.png")
    Image.fromarray(arr[1, :20]).save(folder / "b.jpg")
    assert main(["segment", "--checkpoint", ckpt, "--input", str(folder), "--out", str(tmp_path / "b.npz")]) == 0
    res = np.load(tmp_path / "b.npz")
    assert res["labels_0"].shape == (40, 50) and res["labels_1"].shape == (20, 50)
    assert main(["segment", "--checkpoint", ckpt, "--input", str(folder / "a.png"),
                 "--out", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["labels"].shape == (1, 40, 50)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--checkpoint", "/nope.pt", "--data", "/nope"], "checkpoint not found"),
    (["show", "/nope", "--out", "x.png"], "not found"),
    (["train", "--data", "/nope", "--out", "{tmp}/r", "train.max_steps=1"], "not found"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "train.bogus=1"], "unknown config key"),
    (["generate", "multi-dsprites", "--variant", "plaid", "--out", "{tmp}/g"], "plaid"),
    (["generate", "multi-dsprites", "--num-train", "0", "--out", "{tmp}/g"], "num"),
])
def test_bad_input_is_one_line(argv, message, run, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, data=run / "data") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_segment_rejects_bad_inputs(run, tmp_path, capsys):
    ckpt = str(run / "run" / "checkpoint.pt")
    np.save(tmp_path / "bad.npy", np.zeros((2, 8, 8), dtype=np.float32))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    for argv in (["--checkpoint", ckpt, "--input", str(tmp_path / "bad.npy")],
                 ["--checkpoint", ckpt, "--input", str(tmp_path / "broken.png")],
                 ["--checkpoint", str(bad_ckpt), "--input", str(tmp_path / "bad.npy")]):
        assert main(["segment", *argv, "--out", str(tmp_path / "o.npz")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("what, keys", [
    ("localization", ("speedup_vs_sklearn", "loglik_rel_diff", "localize_images_per_s_64x64")),
    ("metrics", ("small_all_metrics_s", "ari_speedup_vs_sklearn", "ami_speedup_vs_sklearn")),
])
def test_bench_json(what, keys, capsys):
    assert main(["bench", what, "--quick", "--json"]) == 0
    sections = json.loads(capsys.readouterr().out)
    assert list(sections) == [what]  # one section per benchmark run
    result = sections[what]
    for key in keys:
        assert key in result
    assert result.get("loglik_rel_diff", 0.0) < 1e-3
    assert result.get("ari_max_abs_diff_vs_sklearn", 0.0) < 1e-9


def test_bench_models_json(capsys):
    assert main(["bench", "models", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["models"]
    for key in ("ours_img_s", "monet_img_s", "ours_old_img_s", "speed_ratio", "speedup_vs_old", "ours_peak_mem_mb",
                "monet_peak_mem_mb", "ours_gflop_s", "conv_gflop_s"):
        assert result[key] > 0, key


def test_bench_data_and_ddp_json(capsys):
    assert main(["bench", "data", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["data"]
    for key in ("loader_s", "train_step_s", "loader_fraction"):
        assert result[key] > 0, key
    assert main(["bench", "ddp", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["ddp"]
    for key in ("img_s_1proc", "img_s_2proc", "speedup"):
        assert result[key] > 0, key


def test_bench_timing_is_interleaved_medians():
    from locseg.bench.timing import interleaved

    order = []
    interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=0)
    assert order == ["a", "b", "b", "a", "a", "b"]  # who goes first rotates from round to round
