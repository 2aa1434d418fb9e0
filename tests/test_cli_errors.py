"""The catalogue of issue 17 as a table: each bad (or odd) input, its exit status, the one line it
prints, and nothing left behind. Plus Ctrl-C (status 130) and image modes read correctly."""

from __future__ import annotations

import fcntl
import io
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from locseg import segment
from locseg import train as train_lib
from locseg.cli import main
from locseg.data import write_split

TINY = ["train.batch_size=4", "train.eval_every=0", "train.eval_images=4", "train.checkpoint_every=0",
        "train.log_every=1", "model.segmenter.num_slots=3", "model.segmenter.channels=[4,8]",
        "model.segmenter.latent_dim=4", "data.image_size=32"]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Paths for the table: a tiny dataset, a checkpoint, odd datasets, odd files."""
    root = tmp_path_factory.mktemp("errors")
    data = root / "data"
    assert main(["generate", "multi-dsprites", "--num-train", "16", "--num-test", "8", "--seed", "1",
                 "--out", str(data), "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--no-progress",
                 "train.max_steps=1", *TINY]) == 0
    images = np.load(data / "test" / "images.npy")
    labels = np.load(data / "test" / "labels.npy")
    write_split(root / "nolabels" / "test", {"images": images}, {"count": 8})
    write_split(root / "notest" / "train", {"images": images, "labels": labels}, {"count": 8})
    write_split(root / "mismatch" / "train", {"images": images[:, :32, :32], "labels": labels}, {"count": 8})
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("a user's own file")
    (root / "empty.pt").write_bytes(b"")
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    mixed = root / "mixed"
    mixed.mkdir()
    Image.fromarray(images[0]).save(mixed / "a.png")
    Image.fromarray(images[1]).save(mixed / "b.png")
    (mixed / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(root / "float.tif")
    return root


def _fmt(args: list[str], env, tmp) -> list[str]:
    ckpt = env / "run" / "checkpoint.pt"
    return [a.format(env=env, tmp=tmp, ckpt=ckpt) for a in args]


EV = ["evaluate", "--data", "{env}/data"]
SEG = ["segment", "--checkpoint", "{ckpt}"]


def train(data: str, *overrides: str) -> list[str]:
    return ["train", *TINY, "train.max_steps=1", *overrides, "--no-progress", "--out", "{tmp}/run", "--data", data]


# (id, command, exit status, fragment on stderr (status 2) or stdout (status 0), paths that must not exist)
CASES = [
    ("device-gpu", [*train("{env}/data"), "--device", "gpu"], 2, "unknown device 'gpu'", ["{tmp}/run"]),
    ("device-index", [*EV, "--checkpoint", "{ckpt}", "--device", "cuda:99"], 2, "cuda:99", []),
    ("ckpt-empty", [*EV, "--checkpoint", "{env}/empty.pt"], 2, "empty.pt is empty: pass a checkpoint.pt", []),
    ("ckpt-random", [*EV, "--checkpoint", "{env}/random.pt"], 2, "not a checkpoint that locseg train wrote", []),
    ("ckpt-run-dir", [*EV, "--checkpoint", "{env}/run"], 2, "is a directory, not a checkpoint: pass ", []),
    ("num-images-negative", [*EV, "--checkpoint", "{ckpt}", "--num-images", "-4"], 2, "must be >= 1, got -4", []),
    ("num-images-zero", [*EV, "--checkpoint", "{ckpt}", "--num-images", "0"], 2, "must be >= 1, got 0", []),
    ("eval-images-zero", train("{env}/data", "train.eval_images=0"), 2, "train.eval_images must be >= 1",
     ["{tmp}/run"]),
    ("label-size-mismatch", train("{env}/mismatch"), 2, "each label map must match its image",
     ["{tmp}/run"]),
    ("train-missing-data", train("{tmp}/nope"), 2, "not found", ["{tmp}/run"]),
    ("overwrite-user-dir", ["generate", "multi-dsprites", "--num-train", "4", "--num-test", "4", "--no-progress",
                            "--out", "{env}/mine", "--overwrite"], 2, "refusing to overwrite", []),
    ("show-out-dir", ["show", "{env}/data", "--out", "{tmp}"], 2, "ending in .png", ["{tmp}.png"]),
    ("show-out-no-suffix", ["show", "{env}/data", "--out", "{tmp}/grid"], 2, "ending in .png",
     ["{tmp}/grid", "{tmp}/grid.png"]),
    ("segment-out-dir", [*SEG, "--input", "{env}/mixed/a.png", "--out", "{tmp}"], 2, "ending in .npz", []),
    ("segment-strict", [*SEG, "--input", "{env}/mixed", "--out", "{tmp}/o.npz", "--strict"], 2,
     "cannot read image", ["{tmp}/o.npz"]),
    ("segment-float-image", [*SEG, "--input", "{env}/float.tif", "--out", "{tmp}/o.npz"], 2, "mode F",
     ["{tmp}/o.npz"]),
    ("segment-no-readable", [*SEG, "--input", "{env}/mixed/broken.png", "--out", "{tmp}/new/o.npz"], 2,
     "cannot read image", ["{tmp}/new"]),
    # accepted, but said out loud
    ("segment-skips-bad-file", [*SEG, "--input", "{env}/mixed", "--out", "{tmp}/o.npz"], 0,
     "segmented 2 image(s) into 3 slots (1 unreadable skipped: broken.png)", []),
    ("evaluate-no-labels", ["evaluate", "--data", "{env}/nolabels", "--checkpoint", "{ckpt}"], 0, "num_images  8\n",
     []),
    ("train-no-test-split", train("{env}/notest"), 0, "evaluation skipped: the dataset has no test split",
     []),
    # dotted overrides anywhere on the line (argparse alone takes only the first run of them)
    ("overrides-anywhere", ["train", "--data", "{env}/data", *TINY[:4], "--no-progress", *TINY[4:], "--out",
                            "{tmp}/run", "train.max_steps=1"], 0, "at step 1;", []),
    ("override-after-options-checked", ["train", "--data", "{env}/data", "--out", "{tmp}/run", "train.max_steps=1",
                                        "--no-progress", "train.nope=1"], 2, "nope", ["{tmp}/run"]),
    ("evaluate-oracle-override-after-options", ["evaluate", "--baseline", "oracle", "--data", "{env}/data",
                                                "--no-progress", "model.segmenter.nope=1"], 2, "nope", []),
    ("stray-argument", [*train("{env}/data"), "stray"], 2, "unrecognized argument 'stray'", ["{tmp}/run"]),
    ("unknown-option", [*train("{env}/data"), "--bogus"], 2, "unrecognized argument '--bogus'", ["{tmp}/run"]),
    ("show-takes-no-overrides", ["show", "{env}/data", "--out", "{tmp}/g.png", "--no-progress", "a.b=1"], 2,
     "unrecognized argument 'a.b=1'", ["{tmp}/g.png"]),
    ("evaluate-counts-are-integers", [*EV, "--checkpoint", "{ckpt}", "--num-images", "4"], 0, "num_images      4\n",
     []),
]


@pytest.mark.parametrize("argv, status, fragment, absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_catalogue(argv, status, fragment, absent, env, tmp_path, capsys):
    before = sorted(p.relative_to(env) for p in env.rglob("*"))
    assert main(_fmt(argv, env, tmp_path)) == status
    out, err = capsys.readouterr()
    if status == 2:
        assert len(err.strip().splitlines()) == 1, err
        assert fragment in err and "Traceback" not in err and "weights_only" not in err, err
    else:
        assert fragment in out, out
    for path in _fmt(absent, env, tmp_path):
        assert not os.path.exists(path), path
    assert not [p for p in tmp_path.rglob(".*tmp*")], "temporary files left behind"
    assert sorted(p.relative_to(env) for p in env.rglob("*")) == before  # inputs untouched


def test_warnings_name_the_problem(env, tmp_path, caplog):
    assert main(["evaluate", "--data", str(env / "nolabels"), "--checkpoint", str(env / "run" / "checkpoint.pt")]) == 0
    assert "no labels" in caplog.text
    assert main(["segment", "--checkpoint", str(env / "run" / "checkpoint.pt"), "--input", str(env / "mixed"),
                 "--out", str(tmp_path / "o.npz")]) == 0
    assert "skipped broken.png" in caplog.text
    result = np.load(tmp_path / "o.npz")
    assert list(result["names"]) == ["a.png", "b.png"] and result["labels"].shape == (2, 64, 64)


def test_a_locked_run_directory_is_refused(env, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with (run / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another `locseg train` holds the run
        assert main(["train", "--data", str(env / "data"), "--out", str(run), "--no-progress", *TINY,
                     "train.max_steps=1"]) == 2
    assert "in use by another locseg train" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_overwrite_replaces_a_dataset(env, tmp_path):
    args = ["generate", "multi-dsprites", "--num-train", "4", "--num-test", "4", "--no-progress",
            "--out", str(tmp_path / "d")]
    assert main(args) == 0
    assert main([*args, "--seed", "3", "--overwrite"]) == 0


def test_ctrl_c_saves_and_exits_130(env, tmp_path, monkeypatch, capsys):
    real = train_lib.build_model

    def sigint_in_second_step(cfg, size):
        model = real(cfg, size)
        calls = []

        def hook(module, inputs, output):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends, in the middle of a forward pass

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_lib, "build_model", sigint_in_second_step)
    run = tmp_path / "run"
    assert main(["train", "--data", str(env / "data"), "--out", str(run), "--no-progress", *TINY,
                 "train.max_steps=5"]) == 130
    assert "interrupted at step 2" in capsys.readouterr().out
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def _exif_rotated() -> Image.Image:
    image = Image.new("RGB", (6, 4), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 0
    return Image.open(io.BytesIO(_png(image)))


@pytest.mark.parametrize("make, shape, pixel", [
    (lambda: Image.fromarray(np.full((4, 5), 128 * 257, np.uint16)), (4, 5, 3), (128, 128, 128)),  # 16-bit grey
    (lambda: Image.open(io.BytesIO(_png(Image.fromarray(np.full((4, 5), 65535, np.uint16))))), (4, 5, 3),
     (255, 255, 255)),
    (lambda: Image.fromarray(np.full((4, 5), 1000, np.uint16)), (4, 5, 3), (4, 4, 4)),  # not clipped to 255
    (_palette_with_transparency, (4, 4, 3), (10, 200, 30)),
    (lambda: Image.new("CMYK", (3, 2), (0, 0, 0, 0)), (2, 3, 3), (255, 255, 255)),
    (lambda: Image.new("LA", (3, 2), (90, 255)), (2, 3, 3), (90, 90, 90)),
    (lambda: Image.new("1", (3, 2), 1), (2, 3, 3), (255, 255, 255)),
    (_exif_rotated, (6, 4, 3), None),  # upright: width and height swap
])
def test_every_image_mode_reads_as_rgb(make, shape, pixel):
    rgb = segment.to_rgb(make())
    assert rgb.shape == shape and rgb.dtype == np.uint8
    if pixel is not None:
        assert tuple(rgb[0, 0]) == pixel
