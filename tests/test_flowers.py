"""Oxford-102 Flowers with ReDO's protocol, on a small fixture in the official layout built here.

The fixture: generated photographs (a coloured disc on a textured background, JPEG), segmentation
images with the background painted (0, 0, 254) (JPEG, as the official ones), a ``setid.mat`` written
with scipy. Downloads go to a local HTTP server with Range support.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from locseg import checkpoint, metrics
from locseg import config as config_lib
from locseg.cli import main
from locseg.data import DataError, load_split, resolve_dataset
from locseg.data import flowers as F
from locseg.inference import evaluate
from locseg.train import fit
from locseg.types import ModelOutput, mask_locations

SIZES = [(150, 100), (96, 160), (140, 140), (130, 201), (128, 129), (200, 150)]  # (H, W), cycled
SETID = {"tstid": list(range(1, 9)), "valid": [9, 10], "trnid": [11, 12, 13, 14]}  # ReDO: train/val/test
TINY = ["train.max_steps=3", "train.batch_size=4", "train.log_every=1", "train.eval_every=0",
        "train.eval_images=4", "train.checkpoint_every=0", "train.warmup_steps=1",
        "model.segmenter.channels=[4,8]", "eval.batch_size=8"]


def disc(h: int, w: int, image_id: int) -> np.ndarray:
    """(H, W) bool: the fixture's flower, a disc off the centre that depends on the id."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h * (0.4 + 0.03 * (image_id % 5)), w * (0.45 + 0.02 * (image_id % 4))
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.3 * min(h, w)) ** 2


def make_official_root(root: Path, setid: dict[str, list[int]] = SETID) -> dict[int, np.ndarray]:
    """Write jpg/, segmim/, setid.mat; return each id's true full-resolution foreground."""
    rng = np.random.default_rng(0)
    (root / "jpg").mkdir(parents=True)
    (root / "segmim").mkdir()
    truth = {}
    for image_id in sorted(i for ids in setid.values() for i in ids):
        h, w = SIZES[image_id % len(SIZES)]
        fg = disc(h, w, image_id)
        photo = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)  # dark textured background
        photo[..., 1] += 60  # greenish: no channel is 0 there after JPEG
        photo[fg] = np.array([230, 60 + 10 * (image_id % 5), 150], dtype=np.uint8)
        seg = photo.copy()
        seg[~fg] = (0, 0, 254)
        Image.fromarray(photo).save(root / "jpg" / f"image_{image_id:05d}.jpg", quality=95)
        Image.fromarray(seg).save(root / "segmim" / f"segmim_{image_id:05d}.jpg", quality=95)
        truth[image_id] = fg
    savemat(root / "setid.mat", {k: np.asarray([v], dtype=np.uint16) for k, v in setid.items()})
    return truth


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers") / "root"
    truth = make_official_root(root)
    return root, truth


# --------------------------------------------------------------------------- protocol


def test_foreground_rule_is_redos():
    seg = np.array([[[0, 0, 254], [0, 5, 5], [5, 0, 5], [5, 5, 254], [1, 1, 1], [255, 255, 255]]], dtype=np.uint8)
    assert F.foreground_from_segmim(seg).tolist() == [[False, False, False, False, True, True]]
    with pytest.raises(ValueError, match="H, W, 3"):
        F.foreground_from_segmim(seg[..., 0])


@pytest.mark.parametrize("w, h, new, box", [
    (200, 129, (198, 128), (35, 0, 163, 128)),  # longer side truncated: int(128 * 200 / 129) = 198
    (100, 150, (128, 192), (0, 32, 128, 160)),
    (129, 128, (129, 128), (0, 0, 128, 128)),  # offset round(0.5) = 0 (half to even, as Python/torchvision)
    (128, 131, (128, 131), (0, 2, 128, 130)),  # round(1.5) = 2
])
def test_resize_shorter_and_crop_matches_torchvision_arithmetic(w, h, new, box):
    img = Image.fromarray(np.arange(w * h, dtype=np.int32).reshape(h, w) % 251, mode=None).convert("L")
    out = F.resize_shorter_and_crop(img, 128, Image.NEAREST)
    expected = img.resize(new, Image.NEAREST) if new != (w, h) else img
    assert out.size == (128, 128)
    assert np.array_equal(np.asarray(out), np.asarray(expected.crop(box)))


def test_setid_splits_are_swapped(official):
    root, _ = official
    ids = F.read_setid(root / "setid.mat")
    assert ids["train"].tolist() == SETID["tstid"] and ids["test"].tolist() == SETID["trnid"]
    assert ids["val"].tolist() == SETID["valid"]
    assert F.SPLITS == {"train": "tstid", "val": "valid", "test": "trnid"}


def test_convert_layout_and_masks(official, tmp_path):
    root, truth = official
    info = F.convert(root, tmp_path / "out", progress=False)
    assert info["counts"] == {"train": 8, "val": 2, "test": 4}
    test = load_split(tmp_path / "out", "test")
    assert test["images"].shape == (4, 128, 128, 3) and test["images"].dtype == np.uint8
    assert test["labels"].shape == (4, 128, 128) and set(np.unique(test["labels"])) <= {0, 1}
    assert test["image_id"].tolist() == SETID["trnid"]
    assert test["meta"]["iou"] == "redo" and test["meta"]["dataset"] == "flowers"
    assert test["centres"].shape == (4, 1, 2) and test["visibility"].all()
    for i, image_id in enumerate(SETID["trnid"]):  # the JPEG'd blue background recovers the disc
        fg = Image.fromarray(truth[image_id].astype(np.uint8) * 255)
        want = np.asarray(F.resize_shorter_and_crop(fg, 128, Image.NEAREST)) > 0
        assert metrics.iou(want[None], test["labels"][i][None] > 0).item() > 0.9  # JPEG ringing at the edge
    # the image is the photograph resized with nearest (ReDO), pixel for pixel
    photo = Image.open(root / "jpg" / f"image_{SETID['trnid'][0]:05d}.jpg").convert("RGB")
    assert np.array_equal(test["images"][0], np.asarray(F.resize_shorter_and_crop(photo, 128)))


def test_official_root_is_converted_once_and_trains(official, tmp_path):
    root, _ = official
    cached = resolve_dataset(root, progress=False)
    assert cached == F.cache_path(root) and (cached / "test" / "meta.json").is_file()
    stamp = (cached / "train" / "images.npy").stat().st_mtime_ns
    assert load_split(root, "train")["images"].shape[0] == 8  # via the cache, not converted again
    assert (cached / "train" / "images.npy").stat().st_mtime_ns == stamp

    cfg = config_lib.load("configs/flowers.yaml", TINY)
    result = fit(cfg, root, tmp_path / "run", progress=False)
    assert result.step == 3 and "iou" in result.metrics
    model, cfg, _ = checkpoint.load_model(tmp_path / "run" / "checkpoint.pt")
    scores = evaluate(model, load_split(root, "test"), "cpu", cfg.data.image_size)
    assert scores["num_images"] == 4 and 0.0 <= scores["iou"] <= 1.0 and scores["iou_defined"] == 4


def test_evaluate_iou_is_redos_rule(official):
    """A model whose background slot is exactly the true background scores IoU 1, and so does the
    same model with its two slots swapped (ReDO takes the better assignment); all-foreground scores
    the foreground fraction."""
    root, _ = official
    split = load_split(root, "test")
    labels = torch.from_numpy(np.array(split["labels"])).float()  # (N, H, W)

    class Replay(torch.nn.Module):  # returns the given foreground for the images in order
        def __init__(self, fg: torch.Tensor, swap: bool):
            super().__init__()
            self.fg, self.swap, self.pos = fg, swap, 0

        def forward(self, x):
            fg = self.fg[self.pos:self.pos + len(x)]  # (B, H, W)
            self.pos += len(x)
            masks = torch.stack([fg, 1 - fg] if self.swap else [1 - fg, fg], 1)[:, :, None]  # (B, 2, 1, H, W)
            return ModelOutput(recon=x, masks=masks, slot_recons=x[:, None].repeat(1, 2, 1, 1, 1),
                               locations=mask_locations(masks), loss=x.sum() * 0)

    for swap in (False, True):
        assert evaluate(Replay(labels, swap), split, "cpu", 128)["iou"] == pytest.approx(1.0)
    ones = torch.ones_like(labels)
    assert evaluate(Replay(ones, False), split, "cpu", 128)["iou"] == pytest.approx(labels.mean().item())


# --------------------------------------------------------------------------- errors: one line, nothing half-written


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


def test_wrong_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        F.convert(tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not the official Flowers layout"):
        F.convert(tmp_path / "empty", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing file"),
    ("corrupt", "cannot read image"),
])
def test_missing_or_corrupt_file_leaves_nothing(tmp_path, damage, message):
    root = tmp_path / "root"
    make_official_root(root, {"tstid": [1, 2], "valid": [3], "trnid": [4]})
    victim = root / "segmim" / "segmim_00004.jpg"
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(DataError, match=message):
        F.convert(root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    with pytest.raises(DataError, match=message):  # through --data ROOT: no cache left behind either
        load_split(root, "train")
    assert not F.cache_path(root).exists() and _leftovers(root / F.CACHE_DIR) == []


def test_cli_convert_and_errors(official, tmp_path, capsys):
    root, _ = official
    assert main(["convert", "flowers", "--root", str(root), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "c" / "train" / "meta.json").read_text())["count"] == 8
    capsys.readouterr()
    assert main(["convert", "flowers", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err


# --------------------------------------------------------------------------- download


class _Server:
    """A local HTTP server for a dict of files, honouring ``Range: bytes=N-``; records requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                if name not in outer.files:
                    self.send_error(404)
                    return
                data, start = outer.files[name], 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].rstrip("-"))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tgz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def remote(official):
    """The fixture's official files as served bytes, and the RemoteFile table with their MD5s."""
    root, _ = official
    blobs = {"102flowers.tgz": _tgz(root / "jpg"), "102segmentations.tgz": _tgz(root / "segmim"),
             "setid.mat": (root / "setid.mat").read_bytes()}
    specs = tuple(F.RemoteFile(f.name, hashlib.md5(blobs[f.name]).hexdigest(), f.folder) for f in F.FILES)
    return blobs, specs


def test_download_unpacks_the_official_layout(remote, tmp_path):
    blobs, specs = remote
    with _Server(blobs) as server:
        status = F.download(tmp_path / "r", server.url, specs, progress=False)
    assert set(status.values()) == {"downloaded"}
    assert F.is_official_layout(tmp_path / "r") and len(list((tmp_path / "r" / "segmim").glob("*.jpg"))) == 14
    assert not list((tmp_path / "r").glob("*.part")) and _leftovers(tmp_path / "r") == []
    assert load_split(tmp_path / "r", "test")["images"].shape == (4, 128, 128, 3)
    # files already there: no network needed (an unreachable URL is never contacted)
    assert set(F.download(tmp_path / "r", "http://127.0.0.1:9/", specs, progress=False).values()) == {"present"}


def test_download_resumes_a_partial_file(remote, tmp_path):
    blobs, specs = remote
    root = tmp_path / "r"
    root.mkdir()
    half = len(blobs["102flowers.tgz"]) // 2
    (root / "102flowers.tgz.part").write_bytes(blobs["102flowers.tgz"][:half])
    with _Server(blobs) as server:
        F.download(root, server.url, specs, progress=False)
    assert ("102flowers.tgz", f"bytes={half}-") in server.requests
    assert (root / "102flowers.tgz").read_bytes() == blobs["102flowers.tgz"]


def test_download_checksum_mismatch_leaves_nothing(remote, tmp_path):
    blobs, specs = remote
    bad = (F.RemoteFile("setid.mat", "0" * 32),)
    with _Server(blobs) as server, pytest.raises(DataError, match="checksum mismatch for setid.mat"):
        F.download(tmp_path / "r", server.url, bad, progress=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == []


def test_download_without_network_is_one_line(tmp_path, capsys):
    with pytest.raises(DataError, match="cannot download"):
        F.download(tmp_path / "r", "http://127.0.0.1:9/", progress=False, timeout=2)
    assert main(["download", "flowers", "--root", str(tmp_path / "r"), "--url", "http://127.0.0.1:9/",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot download" in err and "no network" in err


def test_saliency_baselines_through_evaluate(official, capsys):
    """`locseg evaluate --baseline whole-image` scores the foreground fraction under ReDO's rule, as
    the Replay model above; the centred ellipse gives a finite IoU on the same split."""
    from locseg.cli import main

    root, _ = official
    split = load_split(root, "test")
    fraction = float(np.mean(np.array(split["labels"]) > 0))
    for name in ("whole-image", "centre-ellipse"):
        assert main(["evaluate", "--baseline", name, "--data", str(root), "--split", "test", "--no-progress"]) == 0
        out = capsys.readouterr().out
        iou = float(next(line.split()[1] for line in out.splitlines() if line.split()[:1] == ["iou"]))
        if name == "whole-image":
            assert iou == pytest.approx(fraction, abs=1e-3)
        assert 0.0 <= iou <= 1.0
