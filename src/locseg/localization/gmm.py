"""Weighted two-component Gaussian mixture over pixel features (paper section 2.4, Algorithm 1).

Every pixel is a 5-d vector y = (R, G, B, y, x) (section 2.4): its colour in [0, 1] and its position
normalised to [0, 1] as ``((i + 0.5) / H, (j + 0.5) / W)`` (pixel centres, the convention of
``locseg.types.mask_locations`` and of the paper's Table 2), so colour and position have comparable
scales and a fitted mean's last two entries are the object's location.

The EM is exactly the EM of a weighted GMM, i.e. of ``sklearn.mixture.GaussianMixture`` run on a
data set in which pixel n appears w_n times (hard 0/1 weights: the selected pixels only). Per image b:

    N_k    = sum_n w_n z_nk + 10 eps                     (eps: machine epsilon, as sklearn)
    mu_k   = sum_n w_n z_nk y_n / N_k                    (Algorithm 1 line 7)
    Sigma_k = sum_n w_n z_nk (y_n - mu_k)(y_n - mu_k)^T / N_k + reg_covar I    (line 8)
    pi_k   = N_k / (N_1 + N_2)
    z_nk   = pi_k N(y_n; mu_k, Sigma_k) / sum_j pi_j N(y_n; mu_j, Sigma_j)    (line 9)

and the monitored quantity is the weighted mean log-likelihood
``sum_n w_n log sum_k pi_k N(y_n; mu_k, Sigma_k) / sum_n w_n``, which EM never decreases.

Initial parameters. Algorithm 1 starts from z = 0.5 (line 1) and mu_1 = 0, mu_2 ~ U(0, 1) (line 2),
then runs "update means (line 7), update variances (line 8), update z (line 9)". Taken literally, the
first mean update from z = 0.5 would give both components the same mean and EM could never separate
them; so we read lines 1-2 as the initial parameters: means = (mu_1, mu_2) as given, mixing weights
pi = (0.5, 0.5) (from z = 0.5), and each covariance from the variance update (line 8) with z = 0.5
and its own initial mean:

    Sigma_k^(0) = sum_n w_n (y_n - mu_k)(y_n - mu_k)^T / sum_n w_n + reg_covar I.

The fit loop then alternates E-step (line 9) and M-step (lines 7-8) like sklearn: ``max_iter``
iterations of [E-step, M-step], stopping an image once its log-likelihood changes by less than
``tol`` between two E-steps, then a final E-step gives the returned responsibilities.

Implementation. Pixels are mapped once per fit to the quadratic design phi(y) = (y_d y_e for d <= e,
y, 1) (F = D(D+1)/2 + D + 1 = 21 columns for D = 5), so that log(pi_k N(y; mu_k, Sigma_k)) =
phi(y) . theta_k (up to the constant D/2 log 2 pi) and the M-step's sufficient statistics are
sum_n w_n z_nk phi(y_n). With two components the E-step only needs the log-odds
log(p_2 / p_1) = phi . (theta_2 - theta_1): the responsibilities are its sigmoids (never NaN) and the
log-likelihood is log p_1 + softplus(log-odds). The M-step sums one component directly and gets the
other as the weighted total minus it (see :func:`_sufficient_statistics`). So each EM iteration is
two batched matrix-vector products over the pixels plus O(B D^3) work, with no per-image loop; the
loop runs under ``torch.inference_mode`` and its results are returned as plain tensors. Everything
is computed in float64 (float32 on MPS, which lacks float64; less accurate there): the expanded
quadratic form cancels large terms, which float32 would not resolve.

Reference. ``gmm_reference.py`` (``reference_e_step``, ``reference_m_step``, ``reference_fit``) writes the
same EM plainly in the paper's terms (Algorithm 1 lines 7-9: densities, responsibilities, weighted means
and scatters, one image at a time); they are slow and serve as the tests' oracle for the fast path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import LocalizationConfig, choices
from ..types import pixel_centres

COVARIANCE_TYPES = choices(LocalizationConfig, "covariance")  # ("full", "diag")
OBJECT_RULES = choices(LocalizationConfig, "object_rule")  # ("centre", "second")
_LOG_2PI = math.log(2.0 * math.pi)
_SOFTPLUS_LINEAR_ABOVE = 50.0  # softplus(d) = d above this: error exp(-50), far below float64 rounding


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype the GMM computes in: float64, or float32 on MPS (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


# --------------------------------------------------------------------------- features


def pixel_features(x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """5-d features (colour, y, x) of pixels, y and x normalised to [0, 1].

    Pixel (i, j) of an H x W image has position ((i + 0.5) / H, (j + 0.5) / W).

    Args:
        x: (B, C, H, W) images (C = 3 gives the paper's 5-d features).
        index: optional (B, N) long flat pixel indices ``i * W + j`` per image (default: all H * W
            pixels in row-major order).

    Returns:
        (B, N, C + 2) features in ``x.dtype``.
    """
    B, C, H, W = x.shape
    if index is None:
        index = torch.arange(H * W, device=x.device).expand(B, H * W)  # (B, N)
    colour = x.flatten(2).gather(2, index.unsqueeze(1).expand(B, C, index.shape[1]))  # (B, C, N)
    ys = pixel_centres(H, x.device, x.dtype)[torch.div(index, W, rounding_mode="floor")]  # (B, N)
    xs = pixel_centres(W, x.device, x.dtype)[index % W]  # (B, N)
    return torch.cat([colour.mT, ys.unsqueeze(-1), xs.unsqueeze(-1)], dim=-1)  # (B, N, C + 2)


# --------------------------------------------------------------------------- initial means


def paper_means(batch: int, dim: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Algorithm 1 line 2: mu_1 = 0 and mu_2 ~ U(0, 1) in every feature dimension.

    Args:
        batch: number of images B.
        dim: feature dimension D.
        generator: optional ``torch.Generator`` for mu_2 (it may live on any device; the draw is
            moved to ``device``). None: the global RNG of ``device``.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        (B, 2, D) initial means.
    """
    draw_device = generator.device if generator is not None else device
    mu2 = torch.rand(batch, dim, generator=generator, device=draw_device).to(device, dtype)  # (B, D)
    return torch.stack([torch.zeros_like(mu2), mu2], dim=1)  # (B, 2, D)


def window_means(features: torch.Tensor, weights: torch.Tensor, window: torch.Tensor,
                 centre_index: torch.Tensor) -> torch.Tensor:
    """The "window" initialisation: mu_1 from the window's rim, mu_2 = the centre pixel.

    mu_1 is the mean of the features weighted by ``weights * (1 - window)``, which favours the
    selected pixels far from the centre (the likely background); when that weight is all zero (a
    one-pixel window) it falls back to the ``weights``-weighted mean. mu_2 is the centre pixel's
    feature vector (the best-reconstructed location, likely on the object).

    Args:
        features: (B, N, D) pixel features.
        weights: (B, N) pixel weights w.
        window: (B, N) Butterworth window G at the same pixels.
        centre_index: (B,) long index of the centre pixel among the N.

    Returns:
        (B, 2, D) initial means.
    """
    B, N, D = features.shape
    rim = (weights * (1.0 - window)).to(features.dtype)  # (B, N)
    rim = torch.where(rim.sum(1, keepdim=True) > 0, rim, weights.to(features.dtype))  # (B, N)
    mu1 = (rim.unsqueeze(1) @ features).squeeze(1) / rim.sum(1, keepdim=True).clamp_min(1e-30)  # (B, D)
    mu2 = features.gather(1, centre_index.view(B, 1, 1).expand(B, 1, D)).squeeze(1)  # (B, D)
    return torch.stack([mu1, mu2], dim=1)  # (B, 2, D)


# --------------------------------------------------------------------------- quadratic design


@dataclass(frozen=True)
class _Tables:
    """Index tables of the quadratic design for one feature dimension D, device and dtype."""

    pairs: torch.Tensor  # (2, P) the (d, e) index pairs with d <= e, row-major: (0,0), (0,1), ..., (D-1,D-1)
    symmetric: torch.Tensor  # (D * D,) index into the P pair rows of entry (d, e) of a D x D matrix
    pair_flat: torch.Tensor  # (P,) flat index d * D + e of each pair in a D x D matrix
    pair_scale: torch.Tensor  # (P,) -1/2 for d = e, -1 for d < e: sum_pairs phi P_de scale = -y^T P y / 2
    signs: torch.Tensor  # (1, 2, 1) -1, +1: sigmoid(-log_odds), sigmoid(+log_odds) are z_1, z_2


@functools.lru_cache(maxsize=32)
def _tables(D: int, device: torch.device, dtype: torch.dtype) -> _Tables:
    with torch.inference_mode(False):  # plain tensors, usable everywhere
        pairs = torch.triu_indices(D, D, device=device)  # (2, P)
        lookup = torch.zeros(D, D, dtype=torch.long, device=device)  # (D, D)
        lookup[pairs[0], pairs[1]] = torch.arange(pairs.shape[1], device=device)
        lookup[pairs[1], pairs[0]] = torch.arange(pairs.shape[1], device=device)
        scale = torch.where(pairs[0] == pairs[1], -0.5, -1.0).to(dtype)  # (P,)
        signs = torch.tensor([-1.0, 1.0], dtype=dtype, device=device).view(1, 2, 1)  # (1, 2, 1)
        return _Tables(pairs=pairs, symmetric=lookup.flatten(), pair_flat=pairs[0] * D + pairs[1],
                       pair_scale=scale, signs=signs)


@dataclass
class _Design:
    """Per-fit precomputation: the quadratic design of the pixels (pixels last) and its weighted sums."""

    phi: torch.Tensor  # (B, F, N) quadratic design (y_d y_e for d <= e, y, 1) of every pixel
    phi_wsum: torch.Tensor  # (B, F) sum_n w_n phi_n
    phi_wmean: torch.Tensor  # (B, F) sum_n w_n phi_n / sum_n w_n
    weights: torch.Tensor  # (B, N) w
    weights_normalised: torch.Tensor  # (B, N) w / sum_n w_n
    total: torch.Tensor  # (B,) sum_n w_n, clamped away from 0
    tables: _Tables


def _design(features: torch.Tensor, weights: torch.Tensor) -> _Design:
    """Quadratic design of ``features`` (B, N, D) in the dtype of ``weights`` (B, N)."""
    B, N, D = features.shape
    tables = _tables(D, weights.device, weights.dtype)
    P = tables.pairs.shape[1]
    phi = weights.new_empty(B, P + D + 1, N)  # (B, F, N)
    y = phi[:, P:P + D]  # (B, D, N) view
    y.copy_(features.mT)  # converts to the compute dtype
    phi[:, P + D] = 1.0
    row = 0
    for d in range(D):  # rows y_d * y_e for e >= d, in the order of ``pairs``
        torch.mul(y[:, d:d + 1], y[:, d:], out=phi[:, row:row + D - d])
        row += D - d
    phi_wsum = (weights.unsqueeze(1) @ phi.mT).squeeze(1)  # (B, F)
    total = weights.sum(1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)  # (B, 1)
    return _Design(phi=phi, phi_wsum=phi_wsum, phi_wmean=phi_wsum / total, weights=weights,
                   weights_normalised=weights / total, total=total.squeeze(1), tables=tables)


def _moments(design: _Design, stats: torch.Tensor, count: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second moments (B, K, D), (B, K, D, D) from sums of phi divided by ``count`` (B, K)."""
    P = design.tables.pairs.shape[1]
    D = design.phi.shape[1] - P - 1
    scaled = stats / count.unsqueeze(-1)  # (B, K, F)
    second = scaled.index_select(-1, design.tables.symmetric).unflatten(-1, (D, D))  # (B, K, D, D)
    return scaled[..., P:P + D], second  # (B, K, D), (B, K, D, D)


def initial_covariances(features: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                        reg_covar: float, covariance_type: str = "full") -> torch.Tensor:
    """Covariances from the variance update (Algorithm 1 line 8) with z = 0.5 and the given means.

    Sigma_k = sum_n w_n (y_n - mu_k)(y_n - mu_k)^T / sum_n w_n + reg_covar I: the weighted scatter
    of all selected pixels around each component's own initial mean (z = 0.5 cancels out).

    Args:
        features: (B, N, D) pixel features.
        weights: (B, N) pixel weights w (all zero gives a finite, positive-definite result).
        means: (B, K, D) initial means.
        reg_covar: non-negative value added to the diagonal.
        covariance_type: "full" or "diag".

    Returns:
        (B, K, D, D) for "full" or (B, K, D) for "diag", in the compute dtype (float64).
    """
    dtype = compute_dtype(features.device)
    with torch.inference_mode():
        design = _design(features, weights.to(dtype))
        covariances = _initial_covariances(design, means.to(dtype), reg_covar, covariance_type)
    return covariances.clone()


def _initial_covariances(design: _Design, means: torch.Tensor, reg_covar: float,
                         covariance_type: str) -> torch.Tensor:
    m1, m2 = _moments(design, design.phi_wsum.unsqueeze(1), design.total.unsqueeze(1))  # (B, 1, D), (B, 1, D, D)
    outer_m1 = m1.unsqueeze(-1) * means.unsqueeze(-2)  # (B, K, D, D) E[y] mu^T
    scatter = m2 - outer_m1 - outer_m1.mT + means.unsqueeze(-1) * means.unsqueeze(-2)  # (B, K, D, D)
    return _finish_covariances(scatter, reg_covar, covariance_type)


def _finish_covariances(scatter: torch.Tensor, reg_covar: float, covariance_type: str) -> torch.Tensor:
    """Add reg_covar to the diagonal (in place: ``scatter`` must be a fresh tensor); "diag" keeps (B, K, D)."""
    if covariance_type == "diag":
        return scatter.diagonal(dim1=-2, dim2=-1) + reg_covar  # (B, K, D)
    scatter.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
    return scatter  # (B, K, D, D)


def _as_matrices(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    return torch.diag_embed(covariances) if covariance_type == "diag" else covariances  # (B, K, D, D)


def _log_density_coefficients(design: _Design, means: torch.Tensor, covariances: torch.Tensor,
                              mix: torch.Tensor) -> torch.Tensor:
    """theta (B, K, F) with phi(y) . theta_k = log pi_k + log N(y; mu_k, Sigma_k) + D/2 log(2 pi).

    A covariance whose Cholesky factorisation fails (not positive definite, possible only with
    reg_covar = 0) is replaced by its diagonal (floored at 1e-30), so the result is always finite.
    """
    chol, info = torch.linalg.cholesky_ex(covariances)  # (B, K, D, D), (B, K)
    if bool(info.any()):  # rare: repair the failed factorisations
        variances = covariances.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30)  # (B, K, D)
        chol = torch.where((info == 0)[..., None, None], chol, torch.diag_embed(variances.sqrt()))  # (B, K, D, D)
    precision = torch.cholesky_inverse(chol)  # (B, K, D, D)
    half_log_det = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (B, K) log |Sigma_k| / 2
    tables = design.tables
    quadratic = precision.flatten(-2).index_select(-1, tables.pair_flat) * tables.pair_scale  # (B, K, P)
    linear = precision @ means.unsqueeze(-1)  # (B, K, D, 1) P mu
    mahalanobis_mean = (means.unsqueeze(-2) @ linear).view_as(half_log_det)  # (B, K) mu^T P mu
    # the -D/2 log(2 pi) of every density is left out here (it cancels in the responsibilities) and
    # added to the log-likelihood once, in fit_gmm
    constant = mix.log() - torch.add(half_log_det, mahalanobis_mean, alpha=0.5)  # (B, K)
    linear = linear.squeeze(-1)  # (B, K, D)
    return torch.cat([quadratic, linear, constant.unsqueeze(-1)], dim=-1)  # (B, K, F)


# --------------------------------------------------------------------------- EM steps


def _e_step(design: _Design, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 line 9: log-odds (B, 1, N) of component 2, weighted mean log-likelihood (B,).

    The responsibilities are z_n2 = sigmoid(log_odds_n) and z_n1 = sigmoid(-log_odds_n) (see
    :func:`_responsibilities`); the log-likelihood is missing the constant -D/2 log(2 pi).
    """
    delta = theta[:, 1:] - theta[:, :1]  # (B, 1, F)
    log_odds = delta @ design.phi  # (B, 1, N) log(p_2 / p_1), p_k = pi_k N(y; mu_k, Sigma_k)
    # log(p_1 + p_2) = log p_1 + softplus(log_odds); sum_n w_n log p_1 = (sum_n w_n phi_n) . theta_1
    softplus = F.softplus(log_odds.squeeze(1), threshold=_SOFTPLUS_LINEAR_ABOVE)  # (B, N)
    mean = torch.linalg.vecdot(design.phi_wmean, theta[:, 0]) + torch.linalg.vecdot(design.weights_normalised,
                                                                                    softplus)  # (B,)
    return log_odds, mean  # (B, 1, N), (B,)


def _responsibilities(log_odds: torch.Tensor) -> torch.Tensor:
    """z (B, 2, N) = (sigmoid(-log_odds), sigmoid(log_odds)), each exact even when tiny."""
    signs = _tables(1, log_odds.device, log_odds.dtype).signs  # (1, 2, 1)
    return torch.sigmoid(log_odds * signs)  # (B, 2, N)


def _sufficient_statistics(design: _Design, log_odds: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """sum_n w_n z_nk phi_n (B, 2, F) for both components, with one pass over the pixels.

    Per image, the component with the smaller mixing weight (before this E-step) is summed directly
    from its exact responsibilities and the other one is the weighted total minus it, which halves
    the per-pixel work. The difference is accurate to rounding as long as it holds a fair share of
    the weight; if it holds less than 1% in some image (a component collapsing within one step),
    both components are summed directly for the whole batch instead.
    """
    w = design.weights.unsqueeze(1)  # (B, 1, N)
    signs = design.tables.signs  # (1, 2, 1)
    second_small = (mix[:, 1] <= mix[:, 0]).view(-1, 1, 1)  # (B, 1, 1)
    sign = torch.where(second_small, signs[:, 1:], signs[:, :1])  # (B, 1, 1)
    small = (torch.sigmoid(sign * log_odds) * w) @ design.phi.mT  # (B, 1, F)
    large = design.phi_wsum.unsqueeze(1) - small  # (B, 1, F)
    if bool((large[..., -1] < 0.01 * design.phi_wsum[:, -1:]).any()):
        return (_responsibilities(log_odds) * w) @ design.phi.mT  # (B, 2, F)
    return torch.where(second_small, torch.cat([large, small], 1), torch.cat([small, large], 1))  # (B, 2, F)


def _m_step(design: _Design, log_odds: torch.Tensor, mix: torch.Tensor, reg_covar: float, covariance_type: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algorithm 1 lines 7-8 (plus the mixing weights): means, covariances, mixing weights.

    ``log_odds`` (B, 1, N) comes from the E-step under the current parameters, whose mixing weights
    ``mix`` (B, 2) only choose how the sums are computed.
    """
    stats = _sufficient_statistics(design, log_odds, mix)  # (B, 2, F) sum_n w_n z_nk phi_n
    count = stats[..., -1] + 10 * torch.finfo(stats.dtype).eps  # (B, 2) N_k
    means, second = _moments(design, stats, count)  # (B, 2, D), (B, 2, D, D)
    scatter = second - means.unsqueeze(-1) * means.unsqueeze(-2)  # (B, 2, D, D)
    covariances = _finish_covariances(scatter, reg_covar, covariance_type)  # (B, 2, D, D) or (B, 2, D)
    return means, covariances, count / count.sum(-1, keepdim=True)  # mixing weights (B, 2)


# --------------------------------------------------------------------------- fit


@dataclass
class GMMResult:
    """A fitted batch of weighted two-component GMMs (all tensors in the compute dtype, float64).

    Attributes:
        means: (B, 2, D) component means.
        covariances: (B, 2, D, D) ("full") or (B, 2, D) ("diag"), reg_covar included.
        weights: (B, 2) mixing weights pi_k.
        resp: (B, N, 2) responsibilities z_nk of every pixel (weighted or not) under the final
            parameters.
        log_likelihood: (B, T + 1) weighted mean log-likelihood after 0, 1, ..., T M-steps, where T
            is the number of iterations the batch ran; an image that converged after n_iter < T
            M-steps keeps its parameters, so its later entries repeat. The last column is the
            log-likelihood of the returned parameters.
        n_iter: (B,) long number of M-steps applied to each image (sklearn's ``n_iter_``).
        converged: (B,) bool, True where the change fell below ``tol`` (sklearn's ``converged_``).
        covariance_type: "full" or "diag".
    """

    means: torch.Tensor
    covariances: torch.Tensor
    weights: torch.Tensor
    resp: torch.Tensor
    log_likelihood: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    covariance_type: str = "full"


@torch.no_grad()
def fit_gmm(features: torch.Tensor, weights: torch.Tensor, means_init: torch.Tensor, *,
            covariances_init: torch.Tensor | None = None, weights_init: torch.Tensor | None = None,
            covariance_type: str = "full", reg_covar: float = 1e-4, max_iter: int = 10,
            tol: float = 1e-4) -> GMMResult:
    """Fit B weighted two-component GMMs by EM at once (section 2.4, Algorithm 1), without gradients.

    Equivalent, image by image, to ``GaussianMixture(2, covariance_type=covariance_type,
    reg_covar=reg_covar, max_iter=max_iter, tol=tol, means_init=..., weights_init=...,
    precisions_init=inverse(covariances_init))`` fitted to the pixels repeated w_n times.

    Args:
        features: (B, N, D) pixel features, e.g. from :func:`pixel_features`.
        weights: (B, N) non-negative pixel weights w (hard 0/1 or soft). An image whose weights are
            all zero gets means 0, covariances reg_covar I and log-likelihood 0 (no NaN).
        means_init: (B, 2, D) initial means, e.g. :func:`paper_means` or :func:`window_means`.
        covariances_init: optional initial covariances, (B, 2, D, D) for "full" or (B, 2, D) for
            "diag"; default: :func:`initial_covariances` (Algorithm 1 line 8 with z = 0.5).
        weights_init: optional (B, 2) initial mixing weights; default (0.5, 0.5) (z = 0.5, line 1).
        covariance_type: "full" or "diag".
        reg_covar: non-negative value added to the covariance diagonals (sklearn's ``reg_covar``).
        max_iter: number of EM iterations (Algorithm 1's L), >= 0.
        tol: an image stops once its weighted mean log-likelihood changes by less than ``tol`` between
            two iterations (sklearn's rule); its parameters are then frozen while the others go on.
            The loop ends when every image has converged. ``tol <= 0`` runs exactly ``max_iter``.

    Returns:
        A :class:`GMMResult` in the compute dtype (float64; float32 on MPS).
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    if features.dim() != 3 or weights.shape != features.shape[:2]:
        raise ValueError(f"features must be (B, N, D) and weights (B, N); got {tuple(features.shape)} "
                         f"and {tuple(weights.shape)}")
    B, N, D = features.shape
    if means_init.shape != (B, 2, D):
        raise ValueError(f"means_init must be (B, 2, D) = {(B, 2, D)}, got {tuple(means_init.shape)}")
    with torch.inference_mode():  # no autograd bookkeeping at all: EM is many small operations
        result = _fit(features, weights, means_init, covariances_init, weights_init, covariance_type, reg_covar,
                      max_iter, tol)
    # plain (non-inference) copies, usable anywhere, including next to autograd
    return GMMResult(means=result.means.clone(), covariances=result.covariances.clone(),
                     weights=result.weights.clone(), resp=result.resp.clone(),
                     log_likelihood=result.log_likelihood.clone(), n_iter=result.n_iter.clone(),
                     converged=result.converged.clone(), covariance_type=covariance_type)


def _fit(features: torch.Tensor, weights: torch.Tensor, means_init: torch.Tensor,
         covariances_init: torch.Tensor | None, weights_init: torch.Tensor | None, covariance_type: str,
         reg_covar: float, max_iter: int, tol: float) -> GMMResult:
    """The EM loop of :func:`fit_gmm` (arguments already checked)."""
    B, N, D = features.shape
    dtype = compute_dtype(features.device)
    design = _design(features, weights.to(dtype))
    means = means_init.to(dtype)  # (B, 2, D) line 2
    if covariances_init is None:
        covariances = _initial_covariances(design, means, reg_covar, covariance_type)  # line 8, z = 0.5
    else:
        covariances = covariances_init.to(dtype)
    mix = features.new_full((B, 2), 0.5, dtype=dtype) if weights_init is None else weights_init.to(dtype)  # line 1
    theta = _log_density_coefficients(design, means, _as_matrices(covariances, covariance_type), mix)

    converged = torch.zeros(B, dtype=torch.bool, device=features.device)  # (B,)
    n_iter = torch.zeros(B, dtype=torch.long, device=features.device)  # (B,) M-steps once some froze
    shared_iter = 0  # M-steps applied to every image while none had converged
    n_converged = 0
    previous = features.new_full((B,), -math.inf, dtype=dtype)  # (B,)
    history = []
    for _ in range(max_iter):  # Algorithm 1 line 6
        log_odds, log_likelihood = _e_step(design, theta)  # line 9 (for the current parameters)
        history.append(log_likelihood)
        new_means, new_covariances, new_mix = _m_step(design, log_odds, mix, reg_covar, covariance_type)  # l. 7-8
        if n_converged:  # freeze the images that have already converged
            active = ~converged  # (B,)
            means = torch.where(active[:, None, None], new_means, means)  # (B, 2, D)
            covariances = torch.where(active.view(B, *[1] * (covariances.dim() - 1)), new_covariances,
                                      covariances)  # (B, 2, D, D) or (B, 2, D)
            mix = torch.where(active[:, None], new_mix, mix)  # (B, 2)
            n_iter += active
        else:
            means, covariances, mix = new_means, new_covariances, new_mix
            shared_iter += 1
        theta = _log_density_coefficients(design, means, _as_matrices(covariances, covariance_type), mix)
        if tol > 0:  # sklearn: converged when |change of the log-likelihood| < tol
            converged = converged | ((log_likelihood - previous).abs() < tol)  # (B,) converged ones stay frozen
            previous = log_likelihood
            n_converged = int(converged.sum())
            if n_converged == B:
                break
    log_odds, log_likelihood = _e_step(design, theta)  # final E-step: responsibilities of the result
    history.append(log_likelihood)
    resp = _responsibilities(log_odds)  # (B, 2, N)
    offset = (design.phi_wsum[:, -1:] > 0).to(dtype) * (0.5 * D * _LOG_2PI)  # (B, 1) left out of theta
    return GMMResult(means=means, covariances=covariances, weights=mix, resp=resp.mT,
                     log_likelihood=torch.stack(history, dim=1) - offset, n_iter=n_iter + shared_iter,
                     converged=converged, covariance_type=covariance_type)


@torch.no_grad()
def predict_resp(features: torch.Tensor, result: GMMResult) -> torch.Tensor:
    """Responsibilities (B, N, 2) of any pixels under fitted parameters (sklearn's ``predict_proba``).

    Args:
        features: (B, N, D) pixel features (need not be the fitted pixels).
        result: a :class:`GMMResult` for the same B images.

    Returns:
        (B, N, 2) responsibilities in the compute dtype.
    """
    dtype = result.means.dtype
    design = _design(features, features.new_zeros(features.shape[:2], dtype=dtype))
    theta = _log_density_coefficients(design, result.means, _as_matrices(result.covariances,
                                                                          result.covariance_type), result.weights)
    return _responsibilities(_e_step(design, theta)[0]).mT  # (B, N, 2)


# --------------------------------------------------------------------------- object choice and degeneracy


def object_component(resp: torch.Tensor, centre_index: torch.Tensor, rule: str = "centre") -> torch.Tensor:
    """Which of the two components is the object.

    Args:
        resp: (B, N, 2) responsibilities.
        centre_index: (B,) long index of the window's centre pixel among the N.
        rule: "centre": the component with the higher responsibility at the centre pixel (the
            best-reconstructed location, which the window is built around; component 1 on an exact
            tie); "second": always component 2, as Algorithm 1 line 11 (I = z_{., 2}).

    Returns:
        (B,) long component index in {0, 1}.
    """
    if rule == "second":
        return torch.ones(resp.shape[0], dtype=torch.long, device=resp.device)  # (B,)
    if rule != "centre":
        raise ValueError(f"object rule must be one of {OBJECT_RULES}, got {rule!r}")
    B = resp.shape[0]
    at_centre = resp.gather(1, centre_index.view(B, 1, 1).expand(B, 1, 2)).squeeze(1)  # (B, 2)
    return at_centre.argmax(dim=-1)  # (B,)


def degenerate_windows(features: torch.Tensor, weights: torch.Tensor, min_colour_var: float) -> torch.Tensor:
    """Images whose weighted pixels cannot be split into two meaningful colour clusters.

    An image is degenerate when fewer than two pixels have a positive weight (this includes all
    weights zero) or when the weighted variance of the colour channels, summed over channels, is
    below ``min_colour_var`` (a window of constant colour: the GMM could only split it by position).

    Args:
        features: (B, N, C + 2) features whose first C entries are the colour.
        weights: (B, N) pixel weights.
        min_colour_var: threshold on the summed weighted colour variance.

    Returns:
        (B,) bool.
    """
    dtype = compute_dtype(features.device)
    colour = features[..., :-2].to(dtype)  # (B, N, C)
    w = weights.to(dtype).unsqueeze(1)  # (B, 1, N)
    sums = (w @ torch.cat([colour, colour * colour], dim=-1)).squeeze(1)  # (B, 2C) sum w c, sum w c^2
    total = w.sum(-1).clamp_min(torch.finfo(dtype).tiny)  # (B, 1)
    mean, mean_square = (sums / total).chunk(2, dim=-1)  # (B, C), (B, C)
    variance = (mean_square - mean * mean).sum(-1)  # (B,) in float64: cancellation is harmless here
    return ((weights > 0).sum(1) < 2) | (variance < min_colour_var)  # (B,)
