"""The non-trainable localization module: quality, box filter, Butterworth window, weighted GMM, localize."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from locseg import config as config_lib
from locseg.bench.localization import sklearn_gmm, synthetic_batch
from locseg.config import LocalizationConfig
from locseg.localization import (
    box_argmax,
    box_sum,
    butterworth_1d,
    butterworth_radius,
    butterworth_window,
    initial_means,
    localize,
    quality_map,
    window_pixels,
)
from locseg.localization.gmm import (
    degenerate_windows,
    fit_gmm,
    initial_covariances,
    object_component,
    paper_means,
    pixel_features,
    predict_resp,
    window_means,
)
from locseg.localization.gmm_reference import reference_e_step, reference_fit, reference_m_step

# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def single_thread():
    """One torch and BLAS thread: these tests run many tiny operations, which extra threads only slow."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(previous)


def two_cluster_features(batch: int, n: int, seed: int) -> torch.Tensor:
    """(B, N, 5) float64 features in [0, 1]: two colour clusters plus positions."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(batch, n, 5, generator=g, dtype=torch.float64)  # (B, N, 5)
    centres = torch.rand(batch, 2, 3, generator=g, dtype=torch.float64)  # (B, 2, 3)
    side = (torch.rand(batch, n, generator=g) < 0.4).long()  # (B, N)
    colour = centres.gather(1, side.unsqueeze(-1).expand(batch, n, 3))  # (B, N, 3)
    feats[..., :3] = (colour + 0.05 * torch.randn(batch, n, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    return feats


def sklearn_fit(data: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str,
                max_iter: int, tol: float, reg_covar: float) -> GaussianMixture:
    gm = sklearn_gmm(means, covariances, covariance_type, max_iter, tol, reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning with tol = 0
        return gm.fit(data)


def squares_image(H: int = 40, W: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 3, H, W) grey images with coloured squares and (2, H, W) bool masks of the target object.

    Image 0: a 9x9 red target and a 5x5 green distractor; image 1: a 9x9 blue target near the border.
    """
    x = torch.full((2, 3, H, W), 0.5)
    target = torch.zeros(2, H, W, dtype=torch.bool)
    x[0, :, 6:15, 8:17] = torch.tensor([0.95, 0.1, 0.1]).view(3, 1, 1)
    target[0, 6:15, 8:17] = True
    x[0, :, 25:30, 30:35] = torch.tensor([0.1, 0.9, 0.2]).view(3, 1, 1)
    x[1, :, 30:39, 38:47] = torch.tensor([0.2, 0.2, 1.0]).view(3, 1, 1)
    target[1, 30:39, 38:47] = True
    return x, target


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).sum((1, 2)).float() / (a | b).sum((1, 2)).float()


# --------------------------------------------------------------------------- quality


@pytest.mark.parametrize("sigma_squared", [False, True])
def test_quality_map_formula_and_gradient(sigma_squared):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 6, generator=g)
    x_re = torch.rand(2, 3, 5, 6, generator=g, requires_grad=True)
    scope = torch.rand(2, 5, 6, generator=g)
    q = quality_map(x, x_re, scope, 0.1, sigma_squared)
    denominator = 2 * 0.1 ** 2 if sigma_squared else 2 * 0.1
    expected = torch.exp(-scope * ((x_re - x) ** 2).sum(1) / denominator)
    assert q.shape == (2, 5, 6)
    assert torch.allclose(q, expected)
    q.sum().backward()
    assert x_re.grad is not None and torch.isfinite(x_re.grad).all() and x_re.grad.abs().sum() > 0


def test_quality_map_is_one_where_scope_is_zero_and_checks_shapes():
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(quality_map(x, 1 - x, torch.zeros(1, 4, 4), 0.05), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="scope"):
        quality_map(x, x, torch.ones(1, 4, 5), 0.05)
    with pytest.raises(ValueError, match="x_re"):
        quality_map(x, x[:, :2], torch.ones(1, 4, 4), 0.05)


# --------------------------------------------------------------------------- box filter


@pytest.mark.parametrize("size", [1, 3, 5, 9, 11, 15, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_sum_equals_direct_convolution(size, dtype):
    a = torch.rand(3, 7, 12, generator=torch.Generator().manual_seed(size), dtype=dtype)  # non-square
    direct = F.conv2d(a.unsqueeze(1), torch.ones(1, 1, size, size, dtype=dtype), padding="same")[:, 0]
    out = box_sum(a, size)
    assert out.dtype == dtype and out.shape == a.shape
    assert torch.allclose(out, direct, atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("size", [1, 3, 9])
def test_box_argmax_matches_convolution_argmax(size):
    a = torch.rand(4, 9, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direct = F.conv2d(a.unsqueeze(1), torch.ones(1, 1, size, size, dtype=a.dtype), padding="same")[:, 0]
    flat = direct.flatten(1).argmax(1)
    expected = torch.stack([flat // 13, flat % 13], 1)
    assert torch.equal(box_argmax(a, size), expected)


def test_box_argmax_breaks_ties_in_row_major_order():
    a = torch.zeros(1, 10, 10)
    a[0, 2:8, 3:9] = 1.0  # 6x6 plateau of ones: a 3x3 box is full on a 4x4 set of centres
    assert box_argmax(a, 3).tolist() == [[3, 4]]
    assert box_argmax(torch.zeros(2, 4, 5), 3).tolist() == [[0, 0], [0, 0]]


# --------------------------------------------------------------------------- Butterworth


def test_butterworth_profile_and_window_match_the_formula():
    r = torch.linspace(0, 30, 61)
    assert torch.allclose(butterworth_1d(r, 8.0, 2.0), 1 / torch.sqrt(1 + (r / 8.0) ** 4))
    assert torch.allclose(butterworth_1d(-r, 8.0, 2.0), butterworth_1d(r, 8.0, 2.0))
    centre = torch.tensor([[3, 10], [0, 0]])
    G = butterworth_window(centre, 9, 14, 4.0, 1.5)
    assert G.shape == (2, 9, 14) and G.dtype == torch.float32
    i = torch.arange(9).view(9, 1).float()
    j = torch.arange(14).view(1, 14).float()
    for b, (ic, jc) in enumerate(centre.tolist()):
        gi = 1 / torch.sqrt(1 + ((i - ic).abs() / 4.0) ** 3.0)
        gj = 1 / torch.sqrt(1 + ((j - jc).abs() / 4.0) ** 3.0)
        assert torch.allclose(G[b], gi * gj)
        assert G[b, ic, jc] == 1.0


@pytest.mark.parametrize("f,n,threshold", [(8.0, 2.0, 0.5), (3.0, 1.0, 0.3), (0.3, 2.0, 0.5), (5.0, 4.0, 0.9)])
def test_butterworth_radius_bounds_the_hard_window(f, n, threshold):
    radius = butterworth_radius(f, n, threshold)
    r = torch.arange(0, 200, dtype=torch.float32)
    inside = butterworth_1d(r, f, n) > threshold
    assert int(inside.nonzero().max()) == radius
    assert butterworth_radius(f, n, 0.0) is None
    assert butterworth_radius(f, n, threshold, limit=1000) == radius
    assert butterworth_radius(f, n, threshold, limit=radius) is None


# --------------------------------------------------------------------------- GMM vs scikit-learn


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_matches_sklearn_on_the_selected_pixels(covariance_type):
    B, N, iters, reg = 3, 300, 7, 1e-4
    feats = two_cluster_features(B, N, seed=2)
    weights = (torch.rand(B, N, generator=torch.Generator().manual_seed(3)) > 0.35).double()  # hard 0/1
    means = paper_means(B, 5, torch.Generator().manual_seed(4))
    covs = initial_covariances(feats, weights, means, reg, covariance_type)
    res = fit_gmm(feats, weights, means, covariance_type=covariance_type, reg_covar=reg, max_iter=iters, tol=0.0)
    assert res.log_likelihood.shape == (B, iters + 1) and res.n_iter.tolist() == [iters] * B
    for b in range(B):
        keep = weights[b] > 0
        data = feats[b][keep].numpy()
        gm = sklearn_fit(data, means[b].numpy(), covs[b].numpy(), covariance_type, iters, 0.0, reg)
        np.testing.assert_allclose(res.means[b].numpy(), gm.means_, rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(res.covariances[b].numpy(), gm.covariances_, rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(res.weights[b].numpy(), gm.weights_, rtol=1e-4)
        np.testing.assert_allclose(res.log_likelihood[b, -1].item(), gm.score(data), rtol=1e-9)  # float64
        np.testing.assert_allclose(res.log_likelihood[b, -2].item(), gm.lower_bound_, rtol=1e-9)
        np.testing.assert_allclose(res.resp[b][keep].numpy(), gm.predict_proba(data), atol=1e-6)


def test_gmm_integer_weights_equal_repeated_pixels_and_sklearn_stopping_rule():
    B, N, reg, tol = 2, 200, 1e-3, 1e-3
    feats = two_cluster_features(B, N, seed=5)
    counts = torch.randint(0, 4, (B, N), generator=torch.Generator().manual_seed(6))  # weights 0..3
    means = paper_means(B, 5, torch.Generator().manual_seed(7))
    covs = initial_covariances(feats, counts.double(), means, reg)
    res = fit_gmm(feats, counts.double(), means, reg_covar=reg, max_iter=50, tol=tol)
    for b in range(B):
        data = np.repeat(feats[b].numpy(), counts[b].numpy(), axis=0)
        gm = sklearn_fit(data, means[b].numpy(), covs[b].numpy(), "full", 50, tol, reg)
        assert res.n_iter[b].item() == gm.n_iter_
        assert bool(res.converged[b]) == gm.converged_
        np.testing.assert_allclose(res.means[b].numpy(), gm.means_, rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(res.covariances[b].numpy(), gm.covariances_, rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(res.log_likelihood[b, -1].item(), gm.score(data), rtol=1e-4)


def test_gmm_tol_freezes_images_like_sklearn_stops():
    """With tol > 0 each image stops (and stays stopped) exactly when scikit-learn's fit would.

    Realistic windows (the benchmark's synthetic scenes) with the paper's initialisation: their
    log-likelihood gains are not monotone, so an image must not resume after it has converged.
    """
    x, x_re, scope, _ = synthetic_batch(24, 64, 64, seed=1)
    cfg = LocalizationConfig()
    centre = box_argmax(scope * quality_map(x, x_re, scope, cfg.sigma1), cfg.box_size)
    pixels = window_pixels(x, centre, butterworth_window(centre, 64, 64, cfg.butterworth_f, cfg.butterworth_n), cfg)
    means = initial_means(pixels, cfg, torch.Generator().manual_seed(0))
    covs = initial_covariances(pixels.features, pixels.weights, means, cfg.reg_covar)
    res = fit_gmm(pixels.features, pixels.weights, means, max_iter=cfg.em_iters, tol=cfg.em_tol)
    assert len(set(res.n_iter.tolist())) > 2
    for b in range(x.shape[0]):
        data = pixels.features[b][pixels.weights[b] > 0].double().numpy()
        gm = sklearn_fit(data, means[b].double().numpy(), covs[b].numpy(), "full", cfg.em_iters, cfg.em_tol,
                         cfg.reg_covar)
        assert res.n_iter[b].item() == gm.n_iter_ and bool(res.converged[b]) == gm.converged_
        np.testing.assert_allclose(res.means[b].numpy(), gm.means_, rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(res.log_likelihood[b, -1].item(), gm.score(data), rtol=1e-4)


def test_reference_steps_are_the_paper_formulas():
    """The readable oracle itself, on a tiny case checked by hand-written loops over pixels."""
    g = torch.Generator().manual_seed(20)
    y = torch.rand(1, 6, 2, generator=g, dtype=torch.float64)  # (1, N, D)
    w = torch.tensor([[1.0, 0.0, 2.0, 1.0, 0.5, 1.0]], dtype=torch.float64)
    means = torch.tensor([[[0.2, 0.3], [0.7, 0.6]]], dtype=torch.float64)
    covs = torch.eye(2, dtype=torch.float64).expand(1, 2, 2, 2) * torch.tensor([0.05, 0.1]).view(1, 2, 1, 1)
    mix = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    z, ll = reference_e_step(y, w, means, covs, mix)
    dens = [[float(mix[0, k]) * math.exp(-0.5 * float(((y[0, n] - means[0, k]) ** 2).sum()) / float(covs[0, k, 0, 0]))
             / (2 * math.pi * float(covs[0, k, 0, 0])) for k in range(2)] for n in range(6)]
    for n in range(6):
        assert z[0, n].tolist() == pytest.approx([d / sum(dens[n]) for d in dens[n]], rel=1e-12)
    assert ll.item() == pytest.approx(sum(float(w[0, n]) * math.log(sum(dens[n])) for n in range(6)) / 5.5, rel=1e-12)
    mu, sigma, pi = reference_m_step(y, w, z, reg_covar=0.0)
    for k in range(2):
        wz = [float(w[0, n] * z[0, n, k]) for n in range(6)]
        mean = sum(wz[n] * y[0, n] for n in range(6)) / sum(wz)
        assert torch.allclose(mu[0, k], mean, rtol=1e-9)
        scatter = sum(wz[n] * torch.outer(y[0, n] - mean, y[0, n] - mean) for n in range(6)) / sum(wz)
        assert torch.allclose(sigma[0, k], scatter, rtol=1e-9)
        assert pi[0, k].item() == pytest.approx(sum(wz) / 5.5, rel=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fast_e_and_m_steps_match_the_readable_oracle(covariance_type):
    """One E-step and one M-step of the fast path (quadratic design, log-odds, one summed component)
    equal Algorithm 1 lines 7-9 written out, with soft weights."""
    from locseg.localization.gmm import _as_matrices, _design, _e_step, _log_density_coefficients, _m_step

    B, N, reg = 3, 200, 1e-4
    feats = two_cluster_features(B, N, seed=21)
    weights = torch.rand(B, N, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    means = paper_means(B, 5, torch.Generator().manual_seed(23))
    covs = initial_covariances(feats, weights, means, reg, covariance_type)
    mix = torch.tensor([[0.4, 0.6], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    full = _as_matrices(covs, covariance_type)  # (B, 2, D, D)
    z, ll = reference_e_step(feats, weights, means, full, mix)
    design = _design(feats, weights)
    log_odds, fast_ll = _e_step(design, _log_density_coefficients(design, means, full, mix))
    assert torch.allclose(torch.sigmoid(log_odds.squeeze(1)), z[..., 1], rtol=1e-9, atol=1e-12)
    assert torch.allclose(fast_ll - 2.5 * math.log(2 * math.pi), ll, rtol=1e-10)  # fast path leaves out D/2 log 2pi
    mu, sigma, pi = reference_m_step(feats, weights, z, reg, covariance_type)
    fast_mu, fast_sigma, fast_pi = _m_step(design, log_odds, mix, reg, covariance_type)
    assert torch.allclose(fast_mu, mu, rtol=1e-8, atol=1e-12)
    assert torch.allclose(_as_matrices(fast_sigma, covariance_type), sigma, rtol=1e-7, atol=1e-12)
    assert torch.allclose(fast_pi, pi, rtol=1e-10)


@pytest.mark.parametrize("soft", [False, True])
def test_fit_gmm_matches_the_readable_oracle_on_realistic_windows(soft):
    """The whole fit (batched, images frozen on convergence) against the oracle's image-by-image
    loop on the benchmark's synthetic scenes: same iterations, parameters and responsibilities."""
    x, x_re, scope, _ = synthetic_batch(12, 64, 64, seed=3)
    cfg = replace(LocalizationConfig(), weights="soft" if soft else "hard")
    centre = box_argmax(scope * quality_map(x, x_re, scope, cfg.sigma1), cfg.box_size)
    pixels = window_pixels(x, centre, butterworth_window(centre, 64, 64, cfg.butterworth_f, cfg.butterworth_n), cfg)
    feats, weights = pixels.features.double(), pixels.weights.double()
    means = initial_means(pixels, cfg, torch.Generator().manual_seed(0)).double()
    covs = initial_covariances(feats, weights, means, cfg.reg_covar)
    fast = fit_gmm(feats, weights, means, reg_covar=cfg.reg_covar, max_iter=cfg.em_iters, tol=cfg.em_tol)
    oracle = reference_fit(feats, weights, means, covs, reg_covar=cfg.reg_covar, max_iter=cfg.em_iters,
                           tol=cfg.em_tol)
    assert len(set(oracle.n_iter.tolist())) > 1  # the stopping rule is exercised
    assert fast.n_iter.tolist() == oracle.n_iter.tolist()
    assert fast.converged.tolist() == oracle.converged.tolist()
    assert torch.allclose(fast.means, oracle.means, rtol=1e-6, atol=1e-9)
    assert torch.allclose(fast.covariances, oracle.covariances, rtol=1e-5, atol=1e-9)
    assert torch.allclose(fast.weights, oracle.weights, rtol=1e-6, atol=1e-9)
    assert torch.allclose(fast.resp, oracle.resp, atol=1e-6)
    ll = fast.log_likelihood[:, -1]
    assert torch.allclose(ll, oracle.log_likelihood[:, 0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("soft", [False, True])
def test_gmm_log_likelihood_never_decreases(covariance_type, soft):
    g = torch.Generator().manual_seed(8)
    feats = torch.rand(6, 150, 5, generator=g, dtype=torch.float64)  # unstructured data: EM has to work
    weights = torch.rand(6, 150, generator=g, dtype=torch.float64)
    weights = weights if soft else (weights > 0.3).double()
    means = paper_means(6, 5, g)
    # reg_covar = 0 as in sklearn's monotonicity test: a regularised M-step is not an exact maximisation
    res = fit_gmm(feats, weights, means, covariance_type=covariance_type, reg_covar=0.0, max_iter=30, tol=0.0)
    steps = res.log_likelihood.diff(dim=1)
    assert torch.isfinite(res.log_likelihood).all()
    assert (steps >= -1e-9 * res.log_likelihood[:, 1:].abs().clamp_min(1)).all()


def test_gmm_batched_equals_image_by_image():
    B, N = 4, 120
    feats = two_cluster_features(B, N, seed=9)
    weights = torch.rand(B, N, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    means = paper_means(B, 5, torch.Generator().manual_seed(11))
    batched = fit_gmm(feats, weights, means, max_iter=40, tol=1e-5)  # images stop at different times
    assert len(set(batched.n_iter.tolist())) > 1
    for b in range(B):
        single = fit_gmm(feats[b:b + 1], weights[b:b + 1], means[b:b + 1], max_iter=40, tol=1e-5)
        assert single.n_iter.item() == batched.n_iter[b].item()
        assert torch.allclose(single.means[0], batched.means[b], atol=1e-12)
        assert torch.allclose(single.covariances[0], batched.covariances[b], atol=1e-12)
        assert torch.allclose(single.resp[0], batched.resp[b], atol=1e-12)
        steps = single.log_likelihood.shape[1]
        assert torch.allclose(single.log_likelihood[0], batched.log_likelihood[b, :steps], atol=1e-12)


def test_gmm_degenerate_inputs_never_give_nan():
    feats = two_cluster_features(4, 50, seed=12)
    weights = torch.zeros(4, 50, dtype=torch.float64)
    weights[1, 7] = 1.0  # a single pixel
    weights[2, :10] = 1.0
    feats[2, :10] = 0.3  # ten identical pixels
    weights[3] = 1.0
    feats[3, :, :3] = 0.6  # constant colour, distinct positions
    means = paper_means(4, 5, torch.Generator().manual_seed(13))
    for covariance_type in ("full", "diag"):
        res = fit_gmm(feats, weights, means, covariance_type=covariance_type, max_iter=10, tol=1e-4)
        for tensor in (res.means, res.covariances, res.weights, res.resp, res.log_likelihood):
            assert torch.isfinite(tensor).all()
        assert torch.allclose(res.resp.sum(-1), torch.ones(4, 50, dtype=torch.float64))
        assert (res.log_likelihood[0] == 0).all()  # no weight: log-likelihood 0
        assert torch.allclose(res.means[0], torch.zeros(2, 5, dtype=torch.float64))
    assert degenerate_windows(feats, weights, 1e-6).tolist() == [True, True, True, True]
    assert not degenerate_windows(two_cluster_features(1, 50, 14), torch.ones(1, 50), 1e-6).item()


def test_gmm_float32_inputs_and_predict_resp():
    feats = two_cluster_features(2, 80, seed=15).float()
    weights = torch.ones(2, 80)
    res = fit_gmm(feats, weights, paper_means(2, 5, torch.Generator().manual_seed(16)), max_iter=5)
    assert res.means.dtype == torch.float64 and torch.isfinite(res.resp).all()
    assert torch.allclose(predict_resp(feats, res), res.resp, atol=1e-12)
    assert not res.resp.requires_grad and not res.resp.is_inference()


def test_pixel_features_are_colour_and_normalised_pixel_centres():
    x = torch.rand(2, 3, 4, 5)
    feats = pixel_features(x)  # (2, 20, 5)
    assert feats.shape == (2, 20, 5)
    assert torch.equal(feats[:, 7, :3], x[:, :, 1, 2])  # pixel (1, 2) is the 8th in row-major order
    assert torch.allclose(feats[0, 7, 3:], torch.tensor([1.5 / 4, 2.5 / 5]))
    some = pixel_features(x, torch.tensor([[7, 0], [19, 7]]))
    assert torch.equal(some[0, 0], feats[0, 7]) and torch.equal(some[1, 0], feats[1, 19])


def test_object_component_rules():
    resp = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.6, 0.4]]])
    assert object_component(resp, torch.tensor([1, 0]), "centre").tolist() == [1, 1]
    assert object_component(resp, torch.tensor([0, 1]), "centre").tolist() == [0, 0]
    assert object_component(resp, torch.tensor([0, 1]), "second").tolist() == [1, 1]


def test_window_means():
    feats = torch.arange(12, dtype=torch.float64).view(1, 4, 3)
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    window = torch.tensor([[1.0, 0.5, 0.75, 0.2]])
    means = window_means(feats, weights, window, torch.tensor([0]))
    rim = torch.tensor([0.0, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert torch.allclose(means[0, 0], (rim[:, None] * feats[0]).sum(0) / rim.sum())
    assert torch.equal(means[0, 1], feats[0, 0])


# --------------------------------------------------------------------------- localize


def test_window_pixels_crop_is_exact():
    """The GMM on the footprint pixels equals the GMM on the whole image with the same 0/1 weights."""
    x, _ = squares_image()
    cfg = LocalizationConfig()
    centre = torch.tensor([[10, 12], [34, 45]])  # the second window is cut by the image border
    window = butterworth_window(centre, 40, 48, cfg.butterworth_f, cfg.butterworth_n)
    pixels = window_pixels(x, centre, window, cfg)
    assert not pixels.whole_image and pixels.features.shape[1] < 40 * 48
    full_weights = (window > cfg.threshold).flatten(1).double()  # (B, H * W)
    assert torch.equal(pixels.weights.sum(1), full_weights.sum(1))
    means = initial_means(pixels, replace(cfg, gmm_init="window"))
    crop = fit_gmm(pixels.features, pixels.weights, means, max_iter=8, tol=0)
    whole = fit_gmm(pixel_features(x), full_weights, means, max_iter=8, tol=0)
    assert torch.allclose(crop.means, whole.means, atol=1e-10)
    assert torch.allclose(crop.log_likelihood, whole.log_likelihood, atol=1e-10)
    on = pixels.valid
    assert torch.allclose(crop.resp[on], whole.resp.gather(1, pixels.index.unsqueeze(-1).expand(-1, -1, 2))[on],
                          atol=1e-10)


@pytest.mark.parametrize("gmm_init", ["window", "paper"])
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_localize_finds_the_best_reconstructed_object(gmm_init, covariance):
    x, target = squares_image()
    scope = (x - 0.5).abs().sum(1).gt(0).float()  # after the background step: objects unexplained
    cfg = LocalizationConfig(gmm_init=gmm_init, covariance=covariance)
    out = localize(x, x.clone(), scope, cfg, generator=torch.Generator().manual_seed(0))  # perfect recon
    assert out.centre.tolist() == [[10, 12], [34, 42]]  # the 9x9 targets' centres
    assert out.L.shape == (2, 40, 48) and out.L.dtype == torch.float32 and torch.isfinite(out.L).all()
    assert ((out.L >= 0) & (out.L <= 1)).all()
    assert (out.L[out.window <= cfg.threshold] == 0).all()  # localized: nothing outside the window
    if gmm_init == "window":
        assert (iou(out.L > 0.5, target) > 0.8).all()
        assert torch.allclose(out.object_mean[0, :3], torch.tensor([0.95, 0.1, 0.1]), atol=1e-4)
        assert torch.allclose(out.object_mean[0, 3:], torch.tensor([10.5 / 40, 12.5 / 48]), atol=1e-4)


def test_localize_skips_a_badly_reconstructed_object():
    x, _ = squares_image()
    scope = (x - 0.5).abs().sum(1).gt(0).float()
    x_re = x.clone()
    x_re[0, :, 6:15, 8:17] = 0.5  # the red square is not reconstructed: Q is low there
    out = localize(x, x_re, scope, LocalizationConfig(gmm_init="window", box_size=5))
    assert out.centre[0].tolist() == [27, 32]  # the green 5x5 square instead (a 5x5 box: a unique maximum)
    green = torch.zeros(40, 48, dtype=torch.bool)
    green[25:30, 30:35] = True
    assert iou((out.L[:1] > 0.5), green.unsqueeze(0)).item() > 0.8


@pytest.mark.parametrize("restrict", ["window", "butterworth", "none"])
def test_localize_restriction_modes(restrict):
    x, target = squares_image()
    scope = (x - 0.5).abs().sum(1).gt(0).float()
    cfg = LocalizationConfig(gmm_init="window", restrict=restrict, object_rule="second")
    out = localize(x, x, scope, cfg)
    assert torch.isfinite(out.L).all()
    if restrict == "window":
        assert (out.L[out.window <= cfg.threshold] == 0).all()
    elif restrict == "butterworth":
        assert (out.L <= out.window + 1e-6).all()
    else:  # Algorithm 1 as written: responsibilities everywhere, same inside the window
        inside = out.window > cfg.threshold
        windowed = localize(x, x, scope, replace(cfg, restrict="window")).L
        assert torch.allclose(out.L[inside], windowed[inside], atol=1e-5)
        assert (iou(out.L > 0.5, target) > 0.8).all()  # window init: object = component 2


def test_localize_soft_weights_and_no_grad():
    x, _ = squares_image()
    x_re = (x + 0.01).requires_grad_()
    scope = torch.ones(2, 40, 48, requires_grad=True)
    out = localize(x, x_re, scope, LocalizationConfig(weights="soft", gmm_init="window"))
    for tensor in (out.L, out.window, out.quality, out.object_mean):
        assert not tensor.requires_grad and torch.isfinite(tensor).all()
    assert out.centre.dtype == torch.long and out.degenerate.dtype == torch.bool


def test_localize_degenerate_windows_fall_back_to_the_window():
    x = torch.full((3, 3, 24, 24), 0.4)  # constant colour everywhere
    x[1, :, 5:15, 5:15] = 0.8  # image 1 is fine
    scope = torch.ones(3, 24, 24)
    cfg = LocalizationConfig()
    out = localize(x, x, scope, cfg, generator=torch.Generator().manual_seed(1))
    assert out.degenerate.tolist() == [True, False, True]
    hard = (out.window > cfg.threshold).float()
    assert torch.equal(out.L[0], hard[0]) and torch.equal(out.L[2], hard[2])
    tiny = localize(x, x, scope, replace(cfg, butterworth_f=0.2))  # a one-pixel window
    assert tiny.degenerate.all() and (tiny.L.sum((1, 2)) == 1).all()
    butter = localize(x, x, scope, replace(cfg, restrict="butterworth"))
    assert torch.equal(butter.L[0], butter.window[0])
    for result in (out, tiny, butter):
        assert torch.isfinite(result.L).all() and torch.isfinite(result.object_mean).all()


def test_localize_is_deterministic_for_a_generator_and_validates_inputs():
    x, _ = squares_image()
    scope = torch.ones(2, 40, 48)
    a = localize(x, x, scope, LocalizationConfig(), generator=torch.Generator().manual_seed(5))
    b = localize(x, x, scope, LocalizationConfig(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.L, b.L)
    with pytest.raises(ValueError):
        localize(x[0], x[0], scope, LocalizationConfig())
    with pytest.raises(ValueError, match="restrict"):
        localize(x, x, scope, LocalizationConfig(restrict="box"))


def test_config_checks_the_new_localization_fields():
    with pytest.raises(config_lib.ConfigError, match="restrict"):
        config_lib.load(overrides=["model.segmenter.localization.restrict=box"])
    with pytest.raises(config_lib.ConfigError, match="threshold"):
        config_lib.load(overrides=["model.segmenter.localization.threshold=1.5"])
    cfg = config_lib.load(overrides=["model.segmenter.localization.restrict=none"])
    assert cfg.model.segmenter.localization.restrict == "none"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_localize_on_cuda_matches_cpu():
    x, _ = squares_image()
    scope = (x - 0.5).abs().sum(1).gt(0).float()
    cfg = LocalizationConfig(gmm_init="window")
    cpu = localize(x, x, scope, cfg)
    gpu = localize(x.cuda(), x.cuda(), scope.cuda(), cfg)
    assert torch.equal(gpu.centre.cpu(), cpu.centre)
    assert torch.allclose(gpu.L.cpu(), cpu.L, atol=1e-4)


def test_relative_quality_formula():
    from locseg.localization.quality import relative_quality

    x = torch.zeros(1, 3, 2, 2)
    x_re = torch.zeros(1, 3, 2, 2)
    x_re[0, 0, 0, 0] = 1.0  # one pixel with squared error 1, three exact: median 0
    scope = torch.ones(1, 2, 2)
    q = relative_quality(x, x_re, scope, scale=4.0, floor=0.1)
    expected = torch.tensor([[[math.exp(-1 / 0.2), 1.0], [1.0, 1.0]]])
    assert torch.allclose(q, expected)
    x_re[0, 0] = 0.5  # every pixel's error 0.25: sigma = 0.1 + 4 * 0.25
    q = relative_quality(x, x_re, scope, scale=4.0, floor=0.1)
    assert torch.allclose(q, torch.full_like(q, math.exp(-0.25 / 2.2)))


def test_scope_weights_ignore_explained_pixels():
    """With scope weights, pixels of scope 0 do not move the GMM: same fit as with them removed."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    scope = torch.ones(1, 16, 16)
    scope[0, :8] = 0.0  # top half explained
    cfg = LocalizationConfig(gmm_init="window", butterworth_f=30.0, box_size=3, weights="soft", scope_weights=True)
    found = localize(x, x, scope, cfg, quality=torch.ones(1, 16, 16))
    x2 = x.clone()
    x2[0, :, :8] = torch.rand(3, 8, 16)  # change only the explained pixels
    found2 = localize(x2, x2, scope, cfg, quality=torch.ones(1, 16, 16))
    assert torch.allclose(found.L[0, 8:], found2.L[0, 8:], atol=1e-6)


def _three_objects() -> torch.Tensor:
    """(1, 3, 24, 24): a red centre square between a blue and a cyan one, touching both."""
    x = torch.zeros(1, 3, 24, 24)
    x[0, 0, 8:16, 8:16] = 1.0  # red, centre
    x[0, 2, 8:16, 2:8] = 1.0  # blue, left
    x[0, 1:, 8:16, 16:22] = 1.0  # cyan, right
    return x


def test_refine_splits_merged_neighbour_and_keeps_single_objects():
    x = _three_objects()
    ids = torch.zeros(24, 24, dtype=torch.long)  # 1 blue, 2 red, 3 cyan
    ids[8:16, 2:8], ids[8:16, 8:16], ids[8:16, 16:22] = 1, 2, 3
    scope = (ids > 0).float().unsqueeze(0)  # only the objects are unexplained
    base = LocalizationConfig(gmm_init="window", butterworth_f=30.0, box_size=7, covariance="diag",
                              scope_weights=True)
    plain = localize(x, x, scope, base, quality=torch.ones(1, 24, 24))
    refined = localize(x, x, scope, replace(base, refine=1), quality=torch.ones(1, 24, 24))
    target = ids[tuple(refined.centre[0].tolist())]  # the object under the window's centre
    assert target > 0
    on = ids > 0
    assert torch.equal((refined.L[0] > 0.5)[on], (ids == target)[on])
    assert ((plain.L[0] > 0.5) & (ids != target) & on).any(), "the plain 2-GMM merges a neighbour"
    one = torch.zeros(1, 3, 24, 24)
    one[0, 0, 8:16, 8:16] = 1.0
    s1 = (one.sum(1) > 0).float()
    single = localize(one, one, s1, replace(base, refine=2), quality=torch.ones(1, 24, 24)).L[0]
    assert (single[8:16, 8:16] > 0.5).all(), "a single-coloured object is never split"


def test_connected_to_centre_matches_scipy_labels():
    from scipy import ndimage

    from locseg.localization.connected import connected_to_centre

    g = torch.Generator().manual_seed(3)
    region = torch.rand(6, 20, 17, generator=g) < 0.55  # (B, H, W) random, many components
    centre = torch.stack([torch.randint(0, 20, (6,), generator=g), torch.randint(0, 17, (6,), generator=g)], 1)
    region[0, centre[0, 0], centre[0, 1]] = False  # one centre outside the region: empty result
    got = connected_to_centre(region, centre)
    for b in range(6):
        labels, _ = ndimage.label(region[b].numpy(), structure=np.ones((3, 3)))
        at = labels[centre[b, 0], centre[b, 1]]
        expected = (labels == at) if at > 0 else np.zeros_like(labels, dtype=bool)
        assert np.array_equal(got[b].numpy(), expected), b


def test_connected_keeps_only_the_part_of_L_that_touches_the_centre():
    from locseg.localization.connected import connected_to_centre, keep_connected

    x = torch.zeros(2, 3, 24, 24)  # white squares on black: every window is one colour
    x[:, :, 6:12, 6:12] = 1.0
    x[:, :, 6:12, 14:18] = 1.0  # a second square two pixels to the right: separate
    x[1, 0, :, :] = torch.linspace(0, 1, 24)  # image 1 has a colour ramp: not degenerate
    scope = (x[0].sum(0) > 0).float().expand(2, 24, 24).clone()  # (B, H, W) the squares are unexplained
    base = LocalizationConfig(box_size=5, butterworth_f=12.0, gmm_init="window", scope_weights=True)
    q = torch.ones(2, 24, 24)
    plain = localize(x, x, scope, base, quality=q)
    joined = localize(x, x, scope, replace(base, connected=True), quality=q)
    assert plain.degenerate.tolist() == [True, False]
    assert torch.equal(plain.centre, joined.centre)
    first = torch.zeros(24, 24, dtype=torch.bool)
    first[6:12, 6:12] = True
    assert first[tuple(joined.centre[0].tolist())]  # the box sum peaks on the bigger square
    assert ((plain.L[0] > 0.5) & scope[0].bool() & ~first).any(), "the plain window takes a piece of the other"
    assert torch.equal((joined.L[0] > 0.5) & scope[0].bool(), first)
    part = connected_to_centre((plain.L > 0.5) & (scope > 0.5), plain.centre)  # (B, H, W)
    assert torch.equal(joined.L, plain.L * part)  # every window, degenerate or not
    outside = torch.tensor([[0, 0], [0, 0]])  # centres off the region: L unchanged
    assert torch.equal(keep_connected(plain.L, scope, outside, 0.5), plain.L)


def test_blob_split_separates_touching_one_colour_sprites_by_position():
    from locseg.localization.connected import connected_to_centre, split_blob

    x = torch.zeros(1, 3, 40, 40)  # two white squares that touch along a thin bridge: one blob
    x[:, :, 8:22, 4:18] = 1.0
    x[:, :, 8:22, 22:36] = 1.0
    x[:, :, 14:16, 18:22] = 1.0  # the bridge
    scope = (x.sum(1) > 0).float()  # (1, H, W)
    base = LocalizationConfig(box_size=5, butterworth_f=8.0, gmm_init="window", scope_weights=True)
    q = torch.ones(1, 40, 40)
    plain = localize(x, x, scope, replace(base, connected=True), quality=q)
    split = localize(x, x, scope, replace(base, connected=True, blob_split=30), quality=q)
    left = torch.zeros(40, 40, dtype=torch.bool)
    left[8:22, 4:18] = True
    square = left if left[tuple(split.centre[0].tolist())] else left.flip(1)  # the square under the centre
    found = split.L[0] > 0.5
    iou = (found & square).sum() / (found | square).sum()
    plain_iou = ((plain.L[0] > 0.5) & square).sum() / ((plain.L[0] > 0.5) | square).sum()
    assert iou > 0.85 and iou > plain_iou, (float(iou), float(plain_iou))
    # a blob that the cut already holds whole is left alone
    one = torch.zeros(1, 3, 40, 40)
    one[:, :, 15:22, 15:22] = 1.0
    s1 = (one.sum(1) > 0).float()
    kept = localize(one, one, s1, replace(base, connected=True), quality=q)
    beyond, _ = split_blob(kept.L, connected_to_centre(s1 > 0.5, kept.centre), kept.centre, 0.5, 30)
    assert not beyond.any()
    assert torch.equal(localize(one, one, s1, replace(base, connected=True, blob_split=30), quality=q).L, kept.L)


def _neck_reference(blob: np.ndarray, centre: tuple[int, int], max_erosions: int, min_pixels: int) -> int:
    """scipy's erosion and labelling: the first erosion (1..max) whose part nearest the centre and the
    rest both hold min_pixels, or 0."""
    from scipy import ndimage

    eroded = blob
    for level in range(1, max_erosions + 1):
        eroded = ndimage.binary_erosion(eroded, structure=np.ones((3, 3)), border_value=0)
        if not eroded.any():
            return 0
        labels, _ = ndimage.label(eroded, structure=np.ones((3, 3)))
        rows, cols = np.nonzero(eroded)
        nearest = np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2)
        near = labels == labels[rows[nearest], cols[nearest]]
        if near.sum() >= min_pixels and (eroded & ~near).sum() >= min_pixels:
            return level
    return 0


def test_neck_split_finds_the_separating_erosion_that_scipy_finds():
    from locseg.localization.connected import split_neck

    g = torch.Generator().manual_seed(3)
    B, H, W = 24, 32, 32
    blob = torch.zeros(B, H, W, dtype=torch.bool)
    for b in range(B):  # unions of 1-3 random rectangles
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            r, c = torch.randint(0, 24, (2,), generator=g).tolist()
            h, w = torch.randint(3, 12, (2,), generator=g).tolist()
            blob[b, r:r + h, c:c + w] = True
    centre = torch.randint(0, 32, (B, 2), generator=g)
    found, part = split_neck(blob, centre, 4, 3)
    expected = [_neck_reference(blob[b].numpy(), tuple(centre[b].tolist()), 4, 3) > 0 for b in range(B)]
    assert found.tolist() == expected
    assert 0 < sum(expected) < B  # the draw holds both kinds
    assert not (part & ~blob).any()  # the cut never leaves the blob
    assert (part.flatten(1).sum(1)[found] < blob.flatten(1).sum(1)[found]).all()  # and never keeps all of it


def test_neck_split_cuts_touching_squares_at_the_neck_and_leaves_one_sprite_whole():
    x = torch.zeros(2, 3, 40, 40)
    x[0, :, 8:22, 4:18] = 1.0  # two white squares joined by a short, thin bridge
    x[0, :, 8:22, 21:35] = 1.0
    x[0, :, 14:16, 18:21] = 1.0
    x[1, :, 10:26, 10:26] = 1.0  # one square, bigger than the window
    scope = (x.sum(1) > 0).float()  # (2, H, W)
    base = LocalizationConfig(box_size=5, butterworth_f=8.0, gmm_init="window", scope_weights=True,
                              connected=True)
    q = torch.ones(2, 40, 40)
    cut = localize(x, x, scope, replace(base, neck_split=5), quality=q)
    left = torch.zeros(40, 40, dtype=torch.bool)
    left[8:22, 4:18] = True
    right = torch.zeros(40, 40, dtype=torch.bool)
    right[8:22, 21:35] = True
    square = left if left[tuple(cut.centre[0].tolist())] else right  # the square under the centre
    found = cut.L[0] > 0.5
    assert (found & square).sum() == square.sum()  # all of it
    assert not (found & (right if square is left else left)).any()  # none of the other square
    assert (found & ~square).sum() <= 4  # at most the bridge's pixels on its side
    plain = localize(x, x, scope, base, quality=q)
    assert torch.equal(cut.L[1], plain.L[1])  # a convex sprite: no erosion separates it, L stands


def _random_blobs(seed: int, B: int = 16, size: int = 32) -> torch.Tensor:
    """(B, size, size) bool unions of 1-3 random rectangles and discs."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(size).view(size, 1)
    cols = torch.arange(size).view(1, size)
    blob = torch.zeros(B, size, size, dtype=torch.bool)
    for b in range(B):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            r, c = torch.randint(2, size - 10, (2,), generator=g).tolist()
            h, w = torch.randint(3, 10, (2,), generator=g).tolist()
            if torch.rand(1, generator=g) < 0.5:
                blob[b, r:r + h, c:c + w] = True
            else:
                blob[b] |= (rows - r) ** 2 + (cols - c) ** 2 <= h * h
    return blob


def test_label_components_gives_scipys_partition():
    from scipy import ndimage

    from locseg.localization.concave import label_components

    region = torch.rand(12, 20, 24, generator=torch.Generator().manual_seed(0)) < 0.45
    for connectivity, structure in ((8, np.ones((3, 3))), (4, ndimage.generate_binary_structure(2, 1))):
        ours = label_components(region, connectivity).numpy()
        for b in range(region.shape[0]):
            theirs, count = ndimage.label(region[b].numpy(), structure=structure)
            assert ((ours[b] > 0) == (theirs > 0)).all()
            pairs = {(int(o), int(t)) for o, t in zip(ours[b][theirs > 0], theirs[theirs > 0], strict=True)}
            assert len(pairs) == count == len({o for o, _ in pairs})  # a one-to-one map of labels
    with pytest.raises(ValueError, match="connectivity"):
        label_components(region, 6)


def test_hull_depth_matches_scipys_convex_hull_of_the_pixel_squares():
    from scipy.spatial import ConvexHull

    from locseg.localization.concave import hull_depth

    blob = _random_blobs(5)
    depth = hull_depth(blob, directions=64)
    H, W = blob.shape[1:]
    grid = np.stack(np.meshgrid(np.arange(H), np.arange(W), indexing="ij"), -1).reshape(-1, 2).astype(float)
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    for b in range(blob.shape[0]):
        pixels = np.argwhere(blob[b].numpy()).astype(float)
        hull = ConvexHull((pixels[:, None, :] + corners[None]).reshape(-1, 2))
        exact = -(grid @ hull.equations[:, :2].T + hull.equations[:, 2]).max(1)  # distance to the edges
        ours = depth[b].flatten().numpy()
        inside = exact >= 0
        assert (ours[inside] >= exact[inside] - 1e-4).all()  # the polygon holds the exact hull
        assert (ours[inside] <= exact[inside] + 0.5).all()  # and lies at most half a pixel beyond it
        assert (ours >= 0).sum() <= inside.sum() * 1.06 + 2
        assert (ours[blob[b].flatten().numpy()] >= 0).all()  # every blob pixel is in the hull


def test_split_concave_cuts_overlapping_squares_between_their_dents_and_leaves_convex_shapes_whole():
    from locseg.localization.concave import split_concave

    H = W = 40
    rows = torch.arange(H).view(H, 1)
    cols = torch.arange(W).view(1, W)
    blob = torch.zeros(4, H, W, dtype=torch.bool)
    first = torch.zeros(H, W, dtype=torch.bool)
    first[6:22, 6:22] = True
    second = torch.zeros(H, W, dtype=torch.bool)
    second[14:32, 16:34] = True
    blob[0] = first | second  # two overlapping squares: no neck, two dents where they cross
    blob[1] = (rows - 20) ** 2 / 12 ** 2 + (cols - 20) ** 2 / 7 ** 2 <= 1  # an ellipse: convex
    blob[2] = first | second
    blob[3, 10:14, 10:30] = True  # a thin bar and a small corner piece: the piece is too small
    blob[3, 14:17, 10:13] = True
    centre = torch.tensor([[8, 8], [20, 20], [30, 32], [11, 20]])
    found, part = split_concave(blob, centre, min_depth=1.0, min_pixels=30)
    assert found.tolist() == [True, False, True, False]
    assert not (part & ~blob).any()
    for b, square in ((0, first), (2, second & ~first)):
        iou = (part[b] & square).sum() / (part[b] | square).sum()
        assert iou > 0.85, (b, float(iou))
    assert not (part[0] & part[2]).any()  # the two sides of one cut do not overlap
    none, _ = split_concave(blob, centre, min_depth=1.0, min_pixels=400)  # parts would be too small
    assert not none.any()


def test_concave_split_in_the_module_keeps_a_neck_cut_square_and_cuts_overlaps_again_inside_each_side():
    x = torch.zeros(3, 3, 44, 44)
    x[0, :, 6:22, 6:22] = 1.0  # overlapping squares: no neck
    x[0, :, 14:32, 16:34] = 1.0
    x[1, :, 8:22, 4:18] = 1.0  # two squares joined by a thin bridge: the neck cut takes it
    x[1, :, 8:22, 21:35] = 1.0
    x[1, :, 14:16, 18:21] = 1.0
    for r, c in ((4, 4), (12, 14), (20, 24)):  # a chain of three overlapping squares: two cuts
        x[2, :, r:r + 15, c:c + 15] = 1.0
    scope = (x.sum(1) > 0).float()
    base = LocalizationConfig(box_size=5, butterworth_f=8.0, gmm_init="window", scope_weights=True,
                              connected=True, neck_split=2)  # two erosions leave the overlaps whole
    q = torch.ones(3, 44, 44)
    neck = localize(x, x, scope, base, quality=q)
    once = localize(x, x, scope, replace(base, concave_split=1.0, concave_min_pixels=30, concave_rounds=1), quality=q)
    twice = localize(x, x, scope, replace(base, concave_split=1.0, concave_min_pixels=30), quality=q)
    assert torch.equal(twice.L[1], neck.L[1])  # the neck cut's square is convex: nothing more to cut
    assert (twice.L[0] > 0.5).sum() < 0.7 * scope[0].sum()  # one square's side, not the union
    square = torch.zeros(44, 44, dtype=torch.bool)
    r, c = twice.centre[2].tolist()
    owner = [(r0, c0) for r0, c0 in ((4, 4), (12, 14), (20, 24)) if r0 <= r < r0 + 15 and c0 <= c < c0 + 15][0]
    square[owner[0]:owner[0] + 15, owner[1]:owner[1] + 15] = True
    got, first = twice.L[2] > 0.5, once.L[2] > 0.5
    assert (got & ~square).sum() <= 10 and (got & square).sum() >= 0.85 * 225  # one square after two cuts
    assert first.sum() > got.sum() + 50  # one cut left two squares on the centre's side


def test_neighbourhood_maxima_equal_max_pooling_and_a_padded_cross():
    from locseg.localization.connected import max_3x3, max_cross

    x = torch.randn(5, 7, 9, generator=torch.Generator().manual_seed(0))  # negatives too: erosion uses -x
    assert torch.equal(max_3x3(x), torch.nn.functional.max_pool2d(x.unsqueeze(1), 3, stride=1, padding=1)[:, 0])
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-math.inf)
    cross = torch.stack([x, padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
    assert torch.equal(max_cross(x), cross.amax(0))
