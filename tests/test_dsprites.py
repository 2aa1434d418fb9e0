"""The dSprites renderer against the 320 genuine dSprites frames shipped in shared/data/dsprites."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from locseg.data import dsprites as D

_DEFAULT_FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsprites" / "dsprites_gif_frames.npy"
FRAMES = Path(os.environ.get("LOCSEG_DSPRITES_FRAMES", _DEFAULT_FRAMES))
# The same frames, bit-packed, shipped with the tests for checkouts without the shared folder.
PACKED = Path(__file__).resolve().parent / "fixtures" / "dsprites_gif_frames_packed.npz"

# What the GIF shows (its README): hearts, then ellipses, then squares.
EXPECTED_SHAPE = np.repeat([3, 2, 1], [192, 64, 64])  # (320,)
# Frames 58..89 traverse pos_y from 0 to 1 with the heart at x = 0, scale 1, orientation 0.
Y_TRAVERSAL = slice(58, 90)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boolean masks along the last two axes (broadcasting)."""
    inter = (a & b).sum((-1, -2))
    union = (a | b).sum((-1, -2))
    return inter / np.maximum(union, 1)


def _centre_on_centroid(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift each (64, 64) mask by whole pixels so its centroid lands near (32, 32)."""
    rows, cols = np.arange(64)[:, None], np.arange(64)[None, :]
    area = masks.sum((1, 2))  # (N,)
    cy = (masks * rows).sum((1, 2)) / area  # (N,)
    cx = (masks * cols).sum((1, 2)) / area  # (N,)
    shifted = np.stack([np.roll(m, (32 - int(round(y)), 32 - int(round(x))), axis=(0, 1))
                        for m, y, x in zip(masks, cy, cx, strict=True)])
    return shifted, np.stack([cy, cx], 1)


def _best_matches(frames: np.ndarray, top_k: int = 6) -> dict[str, np.ndarray]:
    """Search the dSprites latent grid for the rendering that best matches each frame.

    Stage 1 compares each frame with every (shape, scale, orientation) template, both shifted to
    their centroids (IoU by one matrix product); stage 2 renders the ``top_k`` best templates at
    the 3x3 grid positions around the one the centroid offset predicts and keeps the best IoU.
    """
    n = len(frames)
    shp, sc, ori = (g.ravel() for g in np.meshgrid([1, 2, 3], np.arange(6), np.arange(40), indexing="ij"))
    templates = D.render(shp, D.SCALES[sc], D.ORIENTATIONS[ori], 0.5, 0.5)  # (720, 64, 64)
    t_shift, t_centroid = _centre_on_centroid(templates)
    f_shift, f_centroid = _centre_on_centroid(frames)
    tf = t_shift.reshape(len(templates), -1).astype(np.float32)  # (720, 4096)
    ff = f_shift.reshape(n, -1).astype(np.float32)  # (320, 4096)
    inter = ff @ tf.T  # (320, 720)
    union = ff.sum(1)[:, None] + tf.sum(1)[None, :] - inter
    cand = np.argsort(-inter / union, axis=1)[:, :top_k]  # (320, k)

    # Position index predicted from the centroid offset, then a 3x3 neighbourhood.
    offset = f_centroid[:, None, :] - t_centroid[cand]  # (320, k, 2) (y, x) pixels
    pred = np.rint((0.5 + offset / D.POS_SPAN) * 31).astype(int)  # (320, k, 2)
    dy, dx = np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij")
    iy = np.clip(pred[..., 0, None] + dy.ravel(), 0, 31)  # (320, k, 9)
    ix = np.clip(pred[..., 1, None] + dx.ravel(), 0, 31)  # (320, k, 9)
    c = np.broadcast_to(cand[..., None], iy.shape)  # (320, k, 9)
    renders = D.render(shp[c], D.SCALES[sc[c]], D.ORIENTATIONS[ori[c]],
                       D.POSITIONS[ix], D.POSITIONS[iy]).reshape(n, -1, 64, 64)  # (320, k*9, 64, 64)
    ious = _iou(renders, frames[:, None])  # (320, k*9)
    best = ious.argmax(1)  # (320,)
    pick = (np.arange(n), best)
    return {
        "iou": ious[pick],
        "shape": shp[c.reshape(n, -1)[pick]],
        "pos_y": iy.reshape(n, -1)[pick],
        "pos_x": ix.reshape(n, -1)[pick],
    }


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    if FRAMES.exists():
        out = np.load(FRAMES)
    else:
        with np.load(PACKED) as packed:
            out = np.unpackbits(packed["packed"], axis=-1)[..., :64].astype(bool)
    assert out.shape == (320, 64, 64) and out.dtype == bool
    return out


def test_every_genuine_frame_has_a_matching_rendering(frames, record_property):
    match = _best_matches(frames)
    mean, worst = float(match["iou"].mean()), float(match["iou"].min())
    record_property("iou_mean", mean)
    record_property("iou_worst", worst)
    print(f"dSprites renderer vs 320 genuine frames: IoU mean {mean:.4f}, worst {worst:.4f} "
          f"(frame {int(match['iou'].argmin())})")
    assert worst >= 0.9, f"frames below IoU 0.9: {np.flatnonzero(match['iou'] < 0.9).tolist()}"
    assert mean >= 0.98
    np.testing.assert_array_equal(match["shape"], EXPECTED_SHAPE)
    # The y traversal walks through the 32 grid positions in order (y = 0 at the top).
    np.testing.assert_array_equal(match["pos_y"][Y_TRAVERSAL], np.arange(32))
    assert np.all(match["pos_x"][Y_TRAVERSAL] == 0)


def test_square_geometry_is_exact():
    """An upright square of scale s at position (x, y) covers the pixels whose centres lie inside
    the 19.2 s wide box centred at (16 + 32 x, 16 + 32 y)."""
    img = D.render(1, D.SCALES[2], 0.0, D.POSITIONS[7], D.POSITIONS[20])[0]  # (64, 64)
    half = D.SQUARE_HALF_SIDE * D.SCALES[2]
    centres = np.arange(64) + 0.5
    rows = np.abs(centres - (16 + 32 * D.POSITIONS[20])) <= half  # (64,)
    cols = np.abs(centres - (16 + 32 * D.POSITIONS[7])) <= half  # (64,)
    np.testing.assert_array_equal(img, rows[:, None] & cols[None, :])


def test_rotation_is_counter_clockwise_on_screen():
    # A quarter turn of the upright ellipse (long axis horizontal) makes it vertical; the heart's
    # tip (bottom at orientation 0) moves to the right after a small counter-clockwise turn.
    flat, upright = D.render(2, 1.0, [0.0, np.pi / 2], 0.5, 0.5)
    assert np.ptp(np.nonzero(flat)[1]) > 1.5 * np.ptp(np.nonzero(flat)[0])
    assert np.ptp(np.nonzero(upright)[0]) > 1.5 * np.ptp(np.nonzero(upright)[1])
    heart = D.render(3, 1.0, D.ORIENTATIONS[3], 0.5, 0.5)[0]
    bottom_row = np.nonzero(heart.any(1))[0].max()
    assert np.nonzero(heart[bottom_row])[0].mean() > 32


def test_broadcasting_dtype_and_shape():
    out = D.render(np.array([1, 2, 3])[:, None], D.SCALES, 0.3, 0.25, 0.75)
    assert out.shape == (18, 64, 64) and out.dtype == bool
    one = D.render(2, D.SCALES[4], 0.3, 0.25, 0.75)
    np.testing.assert_array_equal(out[10], one[0])  # row-major order of the (3, 6) broadcast
    assert D.render([], 1.0, 0.0, 0.0, 0.0).shape == (0, 64, 64)
    # Orientation 0 and 2*pi are the same image (the dSprites grid holds both).
    a, b = D.render(3, 0.8, [0.0, 2 * np.pi], 0.3, 0.6)
    np.testing.assert_array_equal(a, b)


def test_latent_constants():
    assert D.SCALES.shape == (6,) and D.SCALES[0] == 0.5 and D.SCALES[-1] == 1.0
    assert D.ORIENTATIONS.shape == (40,) and D.ORIENTATIONS[-1] == pytest.approx(2 * np.pi)
    assert D.POSITIONS.shape == (32,) and D.POSITIONS[0] == 0.0 and D.POSITIONS[-1] == 1.0


def test_sprites_stay_inside_their_window():
    # Largest scale, every orientation, at the corners: nothing may touch the window border.
    shape, ori = np.meshgrid([1, 2, 3], D.ORIENTATIONS, indexing="ij")
    masks, top, left = D.render_windows(shape, 1.0, ori, 1.0, 0.0)
    assert masks.any((1, 2)).all()
    assert not masks[:, [0, -1], :].any() and not masks[:, :, [0, -1]].any()
    assert top.min() >= 0 and left.max() + D.WINDOW <= 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": 4}, "unknown dSprites shape"),
        ({"shape": 0}, "unknown dSprites shape"),
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.5}, "scale"),
        ({"pos_x": 1.2}, "pos_x"),
        ({"pos_y": -0.1}, "pos_y"),
        ({"orientation": np.nan}, "finite"),
        ({"scale": [0.5, 1.0], "pos_x": [0.0, 0.5, 1.0]}, "broadcast"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"shape": 1, "scale": 1.0, "orientation": 0.0, "pos_x": 0.5, "pos_y": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        D.render(**args)
