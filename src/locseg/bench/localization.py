"""Speed of the localization module, and its GMM against scikit-learn image by image, in one run.

Measured side by side on the same synthetic images (random rectangles and ellipses of random colours
on a shaded, noisy background; the scope is high on the objects, as after the background step):

- ``localize`` images/s for a batch of 64x64 images and a batch of 210x160 frames (Atari size);
- the batched weighted GMM (:func:`locseg.localization.gmm.fit_gmm`) against
  ``sklearn.mixture.GaussianMixture`` fitted image by image to the same pixels (the hard window's
  pixels), from the same start (``means_init``, ``weights_init``, ``precisions_init``) with the same
  ``max_iter``, ``tol`` and ``reg_covar``: ``speedup_vs_sklearn`` is scikit-learn's time over ours
  on the same images, ``loglik_rel_diff`` the largest relative difference of the final weighted
  mean log-likelihoods. Both inits are compared ("paper" is the config default; "window" does more
  EM work) and ``object_iou_*`` reports how well L > 0.5 covers the object under the found centre.

Both libraries run single-threaded by default (``threads=1``; torch's thread count and the BLAS
pools are restored afterwards): on a small shared machine extra threads only add contention, and
scikit-learn's per-image fits cannot use them well either.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np
import torch

from ..config import LocalizationConfig
from ..localization import initial_means, localize, locate, window_pixels
from ..localization.gmm import GMMResult, fit_gmm, initial_covariances
from .timing import interleaved, median_time

log = logging.getLogger(__name__)


def synthetic_batch(batch: int, H: int, W: int, seed: int = 0, max_objects: int = 4
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random coloured rectangles and ellipses on a shaded, noisy background.

    Args:
        batch: number of images B.
        H: height.
        W: width.
        seed: seed of the generator.
        max_objects: 2..max_objects objects per image (later ones occlude earlier ones).

    Returns:
        x (B, 3, H, W) in [0, 1]; x_re (B, 3, H, W) a slightly noisy reconstruction; scope (B, H, W)
        0.9 on objects and 0.05 on the background; labels (B, H, W) long, 0 = background, k = object k.
    """
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, H).view(1, 1, H, 1)  # (1, 1, H, 1)
    xs = torch.linspace(0, 1, W).view(1, 1, 1, W)  # (1, 1, 1, W)
    base = torch.rand(batch, 3, 1, 1, generator=g) * 0.6 + 0.2  # (B, 3, 1, 1)
    slope = (torch.rand(batch, 3, 2, 1, 1, generator=g) - 0.5) * 0.2  # (B, 3, 2, 1, 1)
    x = base + slope[:, :, 0] * ys + slope[:, :, 1] * xs  # (B, 3, H, W)
    x = x + 0.02 * torch.randn(batch, 3, H, W, generator=g)  # (B, 3, H, W)
    labels = torch.zeros(batch, H, W, dtype=torch.long)  # (B, H, W)
    rows = torch.arange(H, dtype=torch.float32).view(1, H, 1)  # (1, H, 1)
    cols = torch.arange(W, dtype=torch.float32).view(1, 1, W)  # (1, 1, W)
    side = min(H, W)
    for k in range(max_objects):  # vectorised over the batch
        present = torch.rand(batch, generator=g) < (1.0 if k < 2 else 0.6)  # (B,)
        half = (torch.rand(batch, 2, generator=g) * 0.07 + 0.04) * side  # (B, 2) half-sizes in pixels
        cy = torch.rand(batch, generator=g) * (H - 2 * half[:, 0]) + half[:, 0]  # (B,)
        cx = torch.rand(batch, generator=g) * (W - 2 * half[:, 1]) + half[:, 1]  # (B,)
        dy = (rows - cy.view(-1, 1, 1)) / half[:, 0].view(-1, 1, 1)  # (B, H, 1)
        dx = (cols - cx.view(-1, 1, 1)) / half[:, 1].view(-1, 1, 1)  # (B, 1, W)
        ellipse = torch.rand(batch, generator=g).view(-1, 1, 1) < 0.5  # (B, 1, 1)
        mask = torch.where(ellipse, dy ** 2 + dx ** 2 <= 1, (dy.abs() <= 1) & (dx.abs() <= 1))  # (B, H, W)
        mask = mask & present.view(-1, 1, 1)  # (B, H, W)
        colour = torch.rand(batch, 3, 1, 1, generator=g)  # (B, 3, 1, 1)
        x = torch.where(mask.unsqueeze(1), colour + 0.02 * torch.randn(batch, 3, H, W, generator=g), x)
        labels = torch.where(mask, k + 1, labels)  # (B, H, W)
    x = x.clamp(0, 1)  # (B, 3, H, W)
    x_re = (x + 0.03 * torch.randn(batch, 3, H, W, generator=g)).clamp(0, 1)  # (B, 3, H, W)
    scope = torch.where(labels > 0, 0.9, 0.05)  # (B, H, W)
    return x, x_re, scope, labels


def _gmm_problem(x: torch.Tensor, x_re: torch.Tensor, scope: torch.Tensor, cfg: LocalizationConfig):
    """The GMM inputs localize builds: pixels, initial means and covariances."""
    _, centre, window = locate(x, x_re, scope, cfg)  # (B, 2), (B, H, W): localize's first lines
    pixels = window_pixels(x, centre, window, cfg)
    means = initial_means(pixels, cfg, torch.Generator().manual_seed(0))  # (B, 2, D)
    covariances = initial_covariances(pixels.features.double(), pixels.weights.double(), means.double(),
                                      cfg.reg_covar, cfg.covariance)  # (B, 2, D, D)
    return pixels, means, covariances


def sklearn_gmm(means: np.ndarray, covariances: np.ndarray, covariance_type: str, max_iter: int, tol: float,
                reg_covar: float):
    """The scikit-learn reference of our 2-GMM: an unfitted ``GaussianMixture`` that starts from
    ``means`` (2, D) and ``covariances`` (2, D, D) or (2, D) with equal weights, as ``fit_gmm`` does."""
    from sklearn.mixture import GaussianMixture

    precisions = np.linalg.inv(covariances) if covariance_type == "full" else 1.0 / covariances
    return GaussianMixture(2, covariance_type=covariance_type, reg_covar=reg_covar, max_iter=max_iter, tol=tol,
                           means_init=means, weights_init=np.array([0.5, 0.5]), precisions_init=precisions,
                           init_params="random", random_state=0)


def _fit_ours(pixels, means, covariances, cfg: LocalizationConfig) -> GMMResult:
    return fit_gmm(pixels.features, pixels.weights, means, covariances_init=covariances,
                   covariance_type=cfg.covariance, reg_covar=cfg.reg_covar, max_iter=cfg.em_iters, tol=cfg.em_tol)


def _sklearn_fits(pixels, means, covariances, cfg: LocalizationConfig) -> list:
    """One unfitted scikit-learn model per image with that image's window pixels: [(model, data)]."""
    features = pixels.features.double().numpy()
    selected = (pixels.weights > 0).numpy()
    means_np = means.double().numpy()
    cov_np = covariances.numpy()
    return [(sklearn_gmm(means_np[b], cov_np[b], cfg.covariance, cfg.em_iters, cfg.em_tol, cfg.reg_covar),
             features[b][selected[b]]) for b in range(features.shape[0])]


def _fit_all(fits: list) -> None:
    for gm, data in fits:  # every fit restarts from means_init / precisions_init
        gm.fit(data)


def _compare_with_sklearn(sets: list, cfg: LocalizationConfig, repeats: int) -> dict:
    """Our batched GMM and scikit-learn's, image by image, on the same pixels from the same start,
    timed in interleaved rounds (median of each)."""
    ours_s, sklearn_s, n_images = 0.0, 0.0, 0
    rel, ours_iters, sk_iters, pixels_n, collapsed = [], [], [], [], []
    for x, x_re, scope, _ in sets:
        pixels, means, covariances = _gmm_problem(x, x_re, scope, cfg)
        fit = _fit_ours(pixels, means, covariances, cfg)
        fits = _sklearn_fits(pixels, means, covariances, cfg)
        times = interleaved({"ours": lambda p=pixels, m=means, c=covariances: _fit_ours(p, m, c, cfg),
                             "sklearn": lambda f=fits: _fit_all(f)}, repeats)
        ours_s += times["ours"]
        sklearn_s += times["sklearn"]
        n_images += x.shape[0]
        scores = [float(gm.score(data)) for gm, data in fits]
        ours_final = fit.log_likelihood[:, -1].tolist()
        rel += [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours_final, scores, strict=True)]
        ours_iters += fit.n_iter.tolist()
        sk_iters += [int(gm.n_iter_) for gm, _ in fits]
        pixels_n += (pixels.weights > 0).sum(1).tolist()
        collapsed += (fit.weights.min(1).values < 0.01).tolist()
    return {
        "gmm_images_per_s": n_images / ours_s,
        "sklearn_images_per_s": n_images / sklearn_s,
        "speedup_vs_sklearn": sklearn_s / ours_s,
        "loglik_rel_diff": max(rel),
        "gmm_mean_iters": float(np.mean(ours_iters)),
        "sklearn_mean_iters": float(np.mean(sk_iters)),
        "iterations_match": float(np.mean(np.equal(ours_iters, sk_iters))),
        "gmm_pixels_per_image": float(np.mean(pixels_n)),
        "collapsed_fraction": float(np.mean(collapsed)),  # images where a component keeps < 1% of the weight
    }


def _object_iou(x, x_re, scope, labels, cfg: LocalizationConfig) -> float:
    """Mean IoU of L > 0.5 with the object under the found centre (images whose centre is on an object)."""
    out = localize(x, x_re, scope, cfg, generator=torch.Generator().manual_seed(0))
    B = x.shape[0]
    target = labels[torch.arange(B), out.centre[:, 0], out.centre[:, 1]]  # (B,)
    obj = labels == target.view(B, 1, 1)  # (B, H, W)
    found = out.L > 0.5  # (B, H, W)
    iou = (found & obj).sum((1, 2)).float() / (found | obj).sum((1, 2)).clamp_min(1).float()  # (B,)
    on_object = target > 0  # (B,)
    return float(iou[on_object].mean()) if bool(on_object.any()) else float("nan")


def run(json_output: bool = False, quick: bool = False, threads: int | None = 1) -> dict:
    """Benchmark ``localize`` and its GMM against scikit-learn; returns a flat dict of numbers.

    Args:
        json_output: accepted for the CLI's ``--json``; the dict is always JSON-serialisable.
        quick: small batches and one timing repeat (a smoke test, seconds).
        threads: torch and BLAS threads during the run (None: leave them as they are).

    Returns:
        Flat dict: ``localize_images_per_s_64x64``, ``localize_images_per_s_210x160`` (and ``_cuda``
        variants when CUDA is available), ``gmm_images_per_s``, ``sklearn_images_per_s``,
        ``speedup_vs_sklearn``, ``loglik_rel_diff``, ``iterations_match``, ``collapsed_fraction``
        (for the config's "paper" init; the same with a ``_window_init`` suffix for the other),
        ``object_iou_paper_init``, ``object_iou_window_init`` and the settings used.
    """
    del json_output  # the result is plain numbers either way
    import sklearn.mixture  # noqa: F401  (load scikit-learn's BLAS before limiting the thread pools)
    from threadpoolctl import threadpool_limits

    cfg = LocalizationConfig()
    small_batch, frame_batch, repeats = (8, 4, 1) if quick else (64, 64, 7)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning when tol is not reached
            sets = {"64x64": synthetic_batch(small_batch, 64, 64, seed=1),
                    "210x160": synthetic_batch(frame_batch, 210, 160, seed=2)}
            result: dict = {"device": "cpu" + (" + cuda" if torch.cuda.is_available() else ""),
                            "threads": torch.get_num_threads(), "batch_64x64": small_batch,
                            "batch_210x160": frame_batch, "em_iters": cfg.em_iters, "em_tol": cfg.em_tol,
                            "covariance": cfg.covariance}
            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            for device in devices:
                suffix = "" if device == "cpu" else "_cuda"
                for name, batch in sets.items():
                    x, x_re, scope = (t.to(device) for t in batch[:3])
                    seconds = median_time(lambda x=x, x_re=x_re, scope=scope: localize(x, x_re, scope, cfg),
                                          repeats, device=device)
                    result[f"localize_images_per_s_{name}{suffix}"] = x.shape[0] / seconds
                    result[f"localize_ms_per_batch_{name}{suffix}"] = 1e3 * seconds
                    log.info("localize %s on %s: %.1f ms per batch of %d", name, device, 1e3 * seconds, x.shape[0])
            for init in ("paper", "window"):
                suffix = "" if init == cfg.gmm_init else f"_{init}_init"  # unsuffixed: the config default
                stats = _compare_with_sklearn(list(sets.values()), replace(cfg, gmm_init=init), repeats)
                result.update({f"{key}{suffix}": value for key, value in stats.items()})
                result[f"object_iou_{init}_init"] = float(np.mean(
                    [_object_iou(x, x_re, scope, labels, replace(cfg, gmm_init=init))
                     for x, x_re, scope, labels in sets.values()]))
                log.info("GMM (%s init): %.1fx scikit-learn, max loglik rel diff %.2e", init,
                         stats["speedup_vs_sklearn"], stats["loglik_rel_diff"])
    finally:
        torch.set_num_threads(previous_threads)
    return result
