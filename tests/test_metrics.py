"""locseg.metrics against scikit-learn and hand-computed cases; invariants, corner cases, bad input."""

from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from locseg import metrics
from locseg.metrics import _tables, covering, labels, locations, mutual_info, overlap, rand_index, summary

# --------------------------------------------------------------------------- references


def _kept(true: np.ndarray, pred: np.ndarray, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    t, p = true.ravel(), pred.ravel()
    keep = np.ones_like(t, dtype=bool) if ignore_index is None else t != ignore_index
    return t[keep], p[keep]


def _sklearn(true: np.ndarray, pred: np.ndarray, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image scikit-learn ARI and AMI (arithmetic), NaN where no pixel is kept."""
    aris, amis = [], []
    for t_img, p_img in zip(true, pred, strict=True):
        t, p = _kept(t_img, p_img, ignore_index)
        if t.size == 0:
            aris.append(math.nan)
            amis.append(math.nan)
            continue
        aris.append(adjusted_rand_score(t, p))
        amis.append(adjusted_mutual_info_score(t, p, average_method="arithmetic"))
    return np.array(aris), np.array(amis)


def _covering_reference(true: np.ndarray, pred: np.ndarray, ignore_index: int | None,
                        weighted: bool) -> np.ndarray:
    """Segmentation covering with explicit loops over images and segments."""
    out = []
    for t_img, p_img in zip(true, pred, strict=True):
        t, p = _kept(t_img, p_img, ignore_index)
        if t.size == 0:
            out.append(math.nan)
            continue
        best, sizes = [], []
        for r in np.unique(t):
            in_r = t == r
            ious = [(in_r & (p == s)).sum() / (in_r | (p == s)).sum() for s in np.unique(p)]
            best.append(max(ious))
            sizes.append(in_r.sum())
        best, sizes = np.array(best), np.array(sizes)
        out.append((best * sizes).sum() / sizes.sum() if weighted else best.mean())
    return np.array(out)


def _random_labels(rng: np.random.Generator, shape: tuple[int, ...], k: int, skew: bool) -> np.ndarray:
    """Labels in [0, k); with ``skew`` the first labels are much more frequent (blob-like sizes)."""
    if not skew:
        return rng.integers(0, k, shape)
    weights = 1.0 / np.arange(1, k + 1) ** 1.5
    return rng.choice(k, size=shape, p=weights / weights.sum())


# --------------------------------------------------------------------------- agreement with scikit-learn

CASES = [
    # (B, H, W, true labels, pred labels, ignore_index, skew)
    (3, 1, 1, 2, 2, None, False),
    (4, 1, 5, 3, 2, None, False),
    (4, 5, 7, 3, 4, None, False),
    (4, 5, 7, 3, 4, 0, False),
    (3, 16, 16, 1, 1, None, False),
    (3, 16, 16, 1, 5, None, False),
    (3, 16, 16, 5, 1, None, False),
    (3, 16, 16, 2, 4, 0, False),  # one foreground label
    (4, 32, 32, 6, 6, 0, True),
    (2, 64, 64, 6, 8, 0, True),
    (2, 64, 64, 20, 10, None, True),
    (2, 23, 41, 3, 50, None, False),
    (2, 40, 40, 120, 90, None, False),  # more labels than _FEW_LABELS: per-image ids
    (2, 40, 40, 7, 7, 3, False),
]


@pytest.mark.parametrize("B, H, W, kt, kp, ignore_index, skew", CASES)
def test_ari_and_ami_match_sklearn(B, H, W, kt, kp, ignore_index, skew):
    rng = np.random.default_rng(B * 1000 + H * 10 + kt + kp)
    true = _random_labels(rng, (B, H, W), kt, skew)
    pred = _random_labels(rng, (B, H, W), kp, skew)
    pred = rng.permutation(10 * kp)[pred] * 7 + 3  # permuted, sparse predicted label values
    if ignore_index is not None:
        true[0] = ignore_index  # an image with no kept pixel
    ref_ari, ref_ami = _sklearn(true, pred, ignore_index)
    got_ari = metrics.ari(true, pred, ignore_index=ignore_index)
    got_ami = metrics.ami(true, pred, ignore_index=ignore_index)
    assert got_ari.dtype == got_ami.dtype == torch.float64
    assert got_ari.shape == got_ami.shape == (B,)
    np.testing.assert_allclose(got_ari.numpy(), ref_ari, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_ami.numpy(), ref_ami, rtol=0, atol=1e-10)


def test_ami_matches_sklearn_on_atari_sized_frames():
    rng = np.random.default_rng(7)
    true = _random_labels(rng, (2, 210, 160), 9, skew=True)
    pred = _random_labels(rng, (2, 210, 160), 7, skew=True)
    ref_ari, ref_ami = _sklearn(true, pred, 0)
    np.testing.assert_allclose(metrics.ami(true, pred, ignore_index=0).numpy(), ref_ami, rtol=0, atol=1e-10)
    np.testing.assert_allclose(metrics.ari(true, pred, ignore_index=0).numpy(), ref_ari, rtol=0, atol=1e-12)


def test_huge_and_negative_label_values_change_nothing():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 5, (3, 12, 12))
    pred = rng.integers(0, 4, (3, 12, 12))
    expected = metrics.label_scores(true, pred, ignore_index=0)
    huge = metrics.label_scores(true * 10**12 + 5, pred * -(10**15) - 1, ignore_index=5)  # sorted ids
    shifted = metrics.label_scores(true + 10**12, pred - 3, ignore_index=10**12)  # shifted ids
    for name in expected:
        torch.testing.assert_close(huge[name], expected[name], rtol=0, atol=1e-12)
        torch.testing.assert_close(shifted[name], expected[name], rtol=0, atol=1e-12)


def test_chunking_and_id_paths_do_not_change_scores(monkeypatch):
    rng = np.random.default_rng(2)
    true = _random_labels(rng, (5, 24, 24), 12, skew=True)
    pred = _random_labels(rng, (5, 24, 24), 9, skew=True)
    expected = metrics.label_scores(true, pred, ignore_index=0)
    # tiny limits: one image per chunk, per-image ids through a sort, masked ignored pixels, small EMI steps
    for module, name, value in [(_tables, "_MAX_PIXELS", 1), (_tables, "_MAX_TABLE", 1),
                                (_tables, "_MAX_DENSE_SPAN", 4), (_tables, "_FEW_LABELS", 2),
                                (mutual_info, "_EMI_CHUNK", 7)]:
        monkeypatch.setattr(module, name, value)
    got = metrics.label_scores(true, pred, ignore_index=0)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-12)
    monkeypatch.setattr(_tables, "_MAX_DENSE_SPAN", 1000)  # per-image ids through a presence table
    got = metrics.label_scores(true, pred, ignore_index=0)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-12)


def test_emi_tail_window_equals_the_full_sum():
    a = torch.tensor([[20000, 10000, 3000, 500, 100, 1], [1, 1, 1, 1, 1, 0]])  # (2, 6) cluster sizes
    b = torch.tensor([[15000, 15000, 3000, 600, 1], [2, 2, 1, 0, 0]])  # (2, 5)
    total = a.sum(1)
    windowed = mutual_info._expected_mutual_info(a, b, total)
    full = mutual_info._expected_mutual_info(a, b, total, tail=None)
    torch.testing.assert_close(windowed, full, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------- invariants


def test_ari_and_ami_are_symmetric_without_ignore():
    rng = np.random.default_rng(3)
    a = _random_labels(rng, (6, 20, 20), 5, skew=True)
    b = _random_labels(rng, (6, 20, 20), 8, skew=False)
    assert torch.equal(metrics.ari(a, b), metrics.ari(b, a))
    torch.testing.assert_close(metrics.ami(a, b), metrics.ami(b, a), rtol=0, atol=1e-13)


def test_scores_are_invariant_to_relabelling():
    rng = np.random.default_rng(4)
    true = _random_labels(rng, (4, 16, 16), 6, skew=True)
    pred = _random_labels(rng, (4, 16, 16), 5, skew=True)
    expected = metrics.label_scores(true, pred)
    relabelled = metrics.label_scores(rng.permutation(6)[true], rng.permutation(5)[pred] + 40)
    for name in expected:
        torch.testing.assert_close(relabelled[name], expected[name], rtol=0, atol=1e-13)


def test_identical_labelings_score_one():
    rng = np.random.default_rng(5)
    labels = _random_labels(rng, (3, 10, 10), 4, skew=False)
    scores = metrics.label_scores(labels, labels + 9)
    for values in scores.values():
        torch.testing.assert_close(values, torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- hand-computed cases


def test_iou_by_hand():
    true = torch.tensor([[[1, 1, 1, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]])  # (2, 2, 4)
    pred = torch.tensor([[[0, 1, 1, 1], [1, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    got = metrics.iou(true, pred)
    assert got[0].item() == pytest.approx(2 / 5)
    assert math.isnan(got[1].item())  # both empty: 0/0


def test_redo_iou_by_hand():
    gt = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 0, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=torch.bool)
    prob = torch.tensor([[[0.9, 0.5, 0.1, 0.2]],  # exact: IoU 1
                         [[0.0, 0.4, 0.7, 1.0]],  # exact after swapping foreground and background
                         [[0.9, 0.1, 0.1, 0.1]],  # IoU(fg) = 1/2, IoU(bg) = 1/4
                         [[0.9, 0.1, 0.1, 0.1]]])  # no ground-truth foreground
    got = metrics.redo_iou(gt, prob)
    assert got[:3].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert math.isnan(got[3].item())
    swapped = metrics.redo_iou(gt, 1.0 - prob)
    torch.testing.assert_close(swapped[1:3], got[1:3])
    assert swapped[0].item() == pytest.approx(1 / 2)  # 0.5 counts as foreground: {1, 2, 3} vs {0}


def test_segmentation_covering_by_hand():
    true = torch.tensor([[[1, 1, 1, 0, 2, 2]]])  # (1, 1, 6)
    pred = torch.tensor([[[5, 5, 6, 6, 6, 6]]])
    # all pixels: segments 1 (3 px), 0 (1 px), 2 (2 px); best IoUs 2/3, 1/4, 2/4
    msc = metrics.segmentation_covering(true, pred)
    sc = metrics.segmentation_covering(true, pred, weighted=True)
    assert msc.item() == pytest.approx((2 / 3 + 1 / 4 + 2 / 4) / 3)
    assert sc.item() == pytest.approx((3 * 2 / 3 + 1 * 1 / 4 + 2 * 2 / 4) / 6)
    # ignoring label 0 also removes its pixel from predicted segment 6 (now 3 px): IoUs 2/3, 2/3
    msc0 = metrics.segmentation_covering(true, pred, ignore_index=0)
    sc0 = metrics.segmentation_covering(true, pred, ignore_index=0, weighted=True)
    assert msc0.item() == pytest.approx(2 / 3)
    assert sc0.item() == pytest.approx((3 * 2 / 3 + 2 * 2 / 3) / 5)


@pytest.mark.parametrize("ignore_index", [None, 0])
@pytest.mark.parametrize("weighted", [False, True])
def test_segmentation_covering_matches_a_loop_reference(ignore_index, weighted):
    rng = np.random.default_rng(6)
    true = _random_labels(rng, (4, 12, 12), 5, skew=True)
    pred = _random_labels(rng, (4, 12, 12), 4, skew=True)
    true[1] = 0
    expected = _covering_reference(true, pred, ignore_index, weighted)
    got = metrics.segmentation_covering(true, pred, ignore_index=ignore_index, weighted=weighted)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- corner cases


def test_single_cluster_labelings_follow_sklearn():
    true = torch.zeros(1, 4, 4, dtype=torch.long)
    assert metrics.ari(true, true + 3).item() == 1.0  # DeepMind's reference gives NaN (0/0) here
    assert metrics.ami(true, true + 3).item() == 1.0
    # a one-object image under the foreground protocol, found as one cluster
    true = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 2, 2]]])
    assert metrics.ari(true, pred, ignore_index=0).item() == 1.0
    assert metrics.ami(true, pred, ignore_index=0).item() == 1.0
    # a single pixel
    assert metrics.ari(torch.tensor([[[4]]]), torch.tensor([[[2]]])).item() == 1.0


def test_one_predicted_cluster_for_several_true_clusters_scores_zero():
    true = torch.tensor([[[0, 0, 1, 1, 2, 2]]])
    pred = torch.zeros_like(true)
    assert metrics.ari(true, pred).item() == 0.0
    assert metrics.ami(true, pred).item() == 0.0
    assert metrics.ari(pred, true).item() == 0.0
    assert metrics.ami(pred, true).item() == 0.0


def test_images_without_kept_pixels_are_nan():
    true = torch.tensor([[[0, 0], [0, 0]], [[0, 1], [1, 1]]])  # (2, 2, 2): image 0 is all background
    pred = torch.tensor([[[0, 1], [2, 3]], [[0, 1], [1, 1]]])
    for values in metrics.label_scores(true, pred, ignore_index=0).values():
        assert math.isnan(values[0].item())
        assert values[1].item() == 1.0
    assert math.isnan(metrics.ari(true, pred, ignore_index=0)[0].item())
    assert math.isnan(metrics.ami(true, pred, ignore_index=0)[0].item())
    assert math.isnan(metrics.segmentation_covering(true, pred, ignore_index=0, weighted=True)[0].item())


def test_empty_batch_and_empty_images():
    assert metrics.ari(np.zeros((0, 4, 4), int), np.zeros((0, 4, 4), int)).shape == (0,)
    assert torch.isnan(metrics.ami(np.zeros((2, 0, 4), int), np.zeros((2, 0, 4), int))).all()


def test_ignore_index_outside_the_label_dtype():
    rng = np.random.default_rng(8)
    true = rng.integers(0, 255, (2, 8, 8)).astype(np.uint8)
    pred = rng.integers(0, 3, (2, 8, 8)).astype(np.uint8)
    # -1 cannot occur in uint8 labels (a comparison would wrap to 255): nothing is ignored
    torch.testing.assert_close(metrics.ari(true, pred, ignore_index=-1), metrics.ari(true, pred))
    true[:, 0] = 255
    expected = metrics.ari(true.astype(np.int64), pred, ignore_index=255)
    torch.testing.assert_close(metrics.ari(true, pred, ignore_index=255), expected)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32])
def test_numpy_and_torch_inputs_of_any_integer_dtype_agree(dtype):
    rng = np.random.default_rng(9)
    true = rng.integers(0, 6, (3, 9, 11)).astype(dtype)
    pred = rng.integers(0, 4, (3, 9, 11)).astype(dtype)
    expected = metrics.label_scores(true.astype(np.int64), pred.astype(np.int64), ignore_index=0)
    from_numpy = metrics.label_scores(true, pred, ignore_index=0)
    from_torch = metrics.label_scores(torch.from_numpy(true.astype(np.int64)).to(torch.int32),
                                      torch.from_numpy(pred.astype(np.int64)), ignore_index=0)
    mixed = metrics.label_scores(true, torch.from_numpy(pred.astype(np.int64)), ignore_index=0)
    for name in expected:
        for got in (from_numpy, from_torch, mixed):
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_binary_inputs_as_bool_ints_and_numpy_agree():
    rng = np.random.default_rng(10)
    gt = rng.random((3, 8, 8)) < 0.4
    pr = rng.random((3, 8, 8)) < 0.5
    expected = metrics.iou(torch.from_numpy(gt), torch.from_numpy(pr))
    torch.testing.assert_close(metrics.iou(gt.astype(np.uint8), pr.astype(np.int64)), expected)
    torch.testing.assert_close(metrics.redo_iou(gt, pr.astype(np.float32)),
                               metrics.redo_iou(torch.from_numpy(gt).long(), torch.from_numpy(pr)))
    torch.testing.assert_close(metrics.ari(gt, pr), metrics.ari(gt.astype(np.int64), pr.astype(np.int64)))


def test_label_scores_equal_the_single_scores():
    rng = np.random.default_rng(11)
    true = _random_labels(rng, (4, 16, 16), 6, skew=True)
    pred = _random_labels(rng, (4, 16, 16), 5, skew=True)
    scores = metrics.label_scores(true, pred, ignore_index=0)
    torch.testing.assert_close(scores["ari"], metrics.ari(true, pred, ignore_index=0), rtol=0, atol=0)
    torch.testing.assert_close(scores["ami"], metrics.ami(true, pred, ignore_index=0), rtol=0, atol=0)
    torch.testing.assert_close(scores["msc"], metrics.segmentation_covering(true, pred, 0), rtol=0, atol=0)
    torch.testing.assert_close(scores["sc"], metrics.segmentation_covering(true, pred, 0, weighted=True),
                               rtol=0, atol=0)


BAD_LABELS = [
    (np.zeros((4, 4), int), np.zeros((4, 4), int), "(4, 4)"),  # wrong ndim
    (np.zeros((2, 4, 4), int), np.zeros((2, 4, 4, 1), int), "(2, 4, 4, 1)"),  # wrong ndim
    (np.zeros((2, 4, 4), int), np.zeros((3, 4, 4), int), "(3, 4, 4)"),  # different batch sizes
    (np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int), "(2, 4, 5)"),  # shape mismatch
    (np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), int), "(2, 4, 4)"),  # float labels
    (np.zeros((2, 4, 4), int), torch.zeros(2, 4, 4), "(2, 4, 4)"),  # float labels
]


@pytest.mark.parametrize("true, pred, shape", BAD_LABELS)
@pytest.mark.parametrize("fn", [metrics.ari, metrics.ami, metrics.segmentation_covering, metrics.label_scores])
def test_bad_label_maps_raise_value_error_naming_the_shapes(fn, true, pred, shape):
    with pytest.raises(ValueError, match=re.escape(shape)):
        fn(true, pred)


@pytest.mark.parametrize("true, pred, shape", [
    (np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool), "(2, 4, 5)"),
    (np.zeros((2, 4, 4), bool), np.zeros((1, 4, 4), bool), "(1, 4, 4)"),
    (np.zeros((4, 4), bool), np.zeros((4, 4), bool), "(4, 4)"),
    (np.full((2, 4, 4), 2), np.zeros((2, 4, 4), bool), "(2, 4, 4)"),  # not binary
    (np.zeros((2, 4, 4), np.float64), np.zeros((2, 4, 4), bool), "(2, 4, 4)"),  # float ground truth
])
def test_bad_binary_maps_raise_value_error_naming_the_shapes(true, pred, shape):
    with pytest.raises(ValueError, match=re.escape(shape)):
        metrics.iou(true, pred)
    with pytest.raises(ValueError, match=re.escape(shape)):
        metrics.redo_iou(true, pred.astype(np.float32))


# --------------------------------------------------------------------------- helpers


def test_masks_to_labels():
    rng = np.random.default_rng(12)
    masks = torch.from_numpy(rng.random((2, 4, 5, 6)))  # (B, K, H, W)
    expected = masks.argmax(1)
    assert torch.equal(metrics.masks_to_labels(masks), expected)
    assert torch.equal(metrics.masks_to_labels(masks.unsqueeze(2)), expected)  # (B, K, 1, H, W)
    assert torch.equal(metrics.masks_to_labels(masks.numpy()), expected)
    ties = torch.full((1, 3, 2, 2), 0.5)
    assert torch.equal(metrics.masks_to_labels(ties), torch.zeros(1, 2, 2, dtype=torch.long))
    for bad in (torch.zeros(2, 3, 4), torch.zeros(2, 3, 2, 4, 4), torch.zeros(2, 0, 4, 4)):
        with pytest.raises(ValueError, match=re.escape(str(tuple(bad.shape)))):
            metrics.masks_to_labels(bad)


def test_aggregate_leaves_out_and_counts_undefined_images():
    summary = metrics.aggregate(torch.tensor([1.0, float("nan"), 0.0, 0.5, float("nan")], dtype=torch.float64))
    assert summary.mean == pytest.approx(0.5)
    assert summary.std == pytest.approx(np.std([1.0, 0.0, 0.5]))
    assert (summary.n_defined, summary.n_undefined) == (3, 2)
    mean, std, n_defined, n_undefined = metrics.aggregate([float("nan")])
    assert math.isnan(mean) and math.isnan(std) and (n_defined, n_undefined) == (0, 1)


def test_docstring_examples_run():
    attempted = failed = 0
    for module in (metrics, _tables, rand_index, mutual_info, covering, labels, overlap, locations, summary):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        attempted, failed = attempted + result.attempted, failed + result.failed
    assert attempted > 10
    assert failed == 0


def test_benchmark_quick_run_reports_numbers():
    from locseg.bench import metrics as bench

    result = bench.run(quick=True, frames=8, sklearn_frames=2, small_images=16)
    for key in ("small_all_metrics_s", "ari_speedup_vs_sklearn", "ami_speedup_vs_sklearn"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["ari_max_abs_diff_vs_sklearn"] < 1e-10
    assert result["ami_max_abs_diff_vs_sklearn"] < 1e-10


def test_location_error_matches_hand_computation():
    true = np.array([[[0.2, 0.2], [0.8, 0.8], [np.nan, np.nan]]])
    vis = np.array([[True, True, False]])
    pred = np.array([[[0.8, 0.9], [0.2, 0.1], [0.5, 0.5]]])
    total, count = metrics.location_error(true, vis, pred)
    assert count == 2
    assert total == pytest.approx(0.1 + 0.1)
