"""Algorithm 1 written plainly, one formula per line: the test oracle of the fast EM in ``gmm.py``.

The fast path in :mod:`locseg.localization.gmm` batches images, works on a quadratic design and
two-component log-odds, and freezes converged images; these functions compute the same E-step,
M-step and EM loop directly from the paper's formulas (Algorithm 1 lines 7-9), image by image, so the
tests can check the fast path against something a reader can verify line by line. Slow; tests only.
"""

from __future__ import annotations

import math

import torch

from .gmm import _LOG_2PI, GMMResult


def reference_e_step(features: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor,
                     mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 line 9 as the paper writes it (the test oracle of :func:`fit_gmm`'s fast E-step).

        z_nk = pi_k N(y_n; mu_k, Sigma_k) / sum_j pi_j N(y_n; mu_j, Sigma_j)

    computed directly from the densities (log-sum-exp for stability), without the quadratic design
    or the two-component log-odds shortcut of the fast path. Slow and memory-hungry (B, N, 2, D).

    Args:
        features: (B, N, D) pixel features y_n.
        weights: (B, N) pixel weights w_n.
        means: (B, 2, D) mu_k.
        covariances: (B, 2, D, D) Sigma_k (positive definite).
        mix: (B, 2) mixing weights pi_k.

    Returns:
        z (B, N, 2) responsibilities, and the weighted mean log-likelihood
        sum_n w_n log sum_k pi_k N(y_n; mu_k, Sigma_k) / sum_n w_n (B,) (0 where all weights are 0).
    """
    D = features.shape[-1]
    diff = features.unsqueeze(2) - means.unsqueeze(1)  # (B, N, 2, D) y_n - mu_k
    precision = torch.linalg.inv(covariances)  # (B, 2, D, D) Sigma_k^-1
    mahalanobis = torch.einsum("bnkd,bkde,bnke->bnk", diff, precision, diff)  # (B, N, 2)
    log_det = torch.logdet(covariances)  # (B, 2)
    log_density = -0.5 * (D * _LOG_2PI + log_det.unsqueeze(1) + mahalanobis)  # (B, N, 2) log N(y_n; mu_k, Sigma_k)
    log_joint = mix.log().unsqueeze(1) + log_density  # (B, N, 2) log pi_k N(y_n; mu_k, Sigma_k)
    log_total = torch.logsumexp(log_joint, dim=2)  # (B, N) log sum_j pi_j N(y_n; mu_j, Sigma_j)
    z = (log_joint - log_total.unsqueeze(2)).exp()  # (B, N, 2) line 9
    total = weights.sum(1)  # (B,)
    mean_log_likelihood = (weights * log_total).sum(1) / total.clamp_min(torch.finfo(total.dtype).tiny)  # (B,)
    return z, mean_log_likelihood


def reference_m_step(features: torch.Tensor, weights: torch.Tensor, z: torch.Tensor, reg_covar: float,
                     covariance_type: str = "full") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algorithm 1 lines 7-8 (and the mixing weights) as the paper writes them: the oracle of the fast M-step.

        N_k     = sum_n w_n z_nk + 10 eps
        mu_k    = sum_n w_n z_nk y_n / N_k                                    (line 7)
        Sigma_k = sum_n w_n z_nk (y_n - mu_k)(y_n - mu_k)^T / N_k + reg_covar I   (line 8)
        pi_k    = N_k / (N_1 + N_2)

    Args:
        features: (B, N, D) pixel features y_n.
        weights: (B, N) pixel weights w_n.
        z: (B, N, 2) responsibilities from :func:`reference_e_step`.
        reg_covar: added to the covariance diagonals.
        covariance_type: "full", or "diag" (Sigma_k's off-diagonal entries set to 0).

    Returns:
        means (B, 2, D), covariances (B, 2, D, D) (diagonal matrices for "diag") and mixing weights (B, 2).
    """
    D = features.shape[-1]
    wz = weights.unsqueeze(2) * z  # (B, N, 2) w_n z_nk
    count = wz.sum(1) + 10 * torch.finfo(features.dtype).eps  # (B, 2) N_k
    means = torch.einsum("bnk,bnd->bkd", wz, features) / count.unsqueeze(2)  # (B, 2, D) line 7
    diff = features.unsqueeze(2) - means.unsqueeze(1)  # (B, N, 2, D) y_n - mu_k
    scatter = torch.einsum("bnk,bnkd,bnke->bkde", wz, diff, diff) / count[..., None, None]  # (B, 2, D, D) line 8
    if covariance_type == "diag":
        scatter = torch.diag_embed(scatter.diagonal(dim1=-2, dim2=-1))  # (B, 2, D, D)
    eye = torch.eye(D, dtype=features.dtype, device=features.device)  # (D, D)
    return means, scatter + reg_covar * eye, count / count.sum(1, keepdim=True)


def reference_fit(features: torch.Tensor, weights: torch.Tensor, means_init: torch.Tensor,
                  covariances_init: torch.Tensor, weights_init: torch.Tensor | None = None,
                  covariance_type: str = "full", reg_covar: float = 1e-4, max_iter: int = 10,
                  tol: float = 1e-4) -> GMMResult:
    """The EM loop of Algorithm 1 (lines 6-9) over :func:`reference_e_step` / :func:`reference_m_step`,
    one image at a time, with sklearn's stopping rule: the oracle :func:`fit_gmm` is tested against.

    Each iteration runs the E-step (line 9) and then the M-step (lines 7-8); an image stops after the
    iteration in which its weighted mean log-likelihood changed by less than ``tol``; a final E-step
    gives the responsibilities of the returned parameters.

    Args:
        features: (B, N, D) pixel features (float64 recommended).
        weights: (B, N) pixel weights.
        means_init: (B, 2, D) initial means.
        covariances_init: (B, 2, D, D) initial covariances (full matrices also for "diag").
        weights_init: (B, 2) initial mixing weights; default (0.5, 0.5).
        covariance_type: "full" or "diag".
        reg_covar: added to the covariance diagonals.
        max_iter: EM iterations at most.
        tol: stopping threshold on the change of the log-likelihood (<= 0: run ``max_iter``).

    Returns:
        a :class:`GMMResult` (covariances as (B, 2, D, D) matrices; ``log_likelihood`` (B, 1) holds
        the final value only).
    """
    B = features.shape[0]
    results = []
    for b in range(B):  # one image at a time: no freezing of converged images needed
        y, w = features[b:b + 1], weights[b:b + 1]  # (1, N, D), (1, N)
        means, covariances = means_init[b:b + 1], covariances_init[b:b + 1]  # (1, 2, D), (1, 2, D, D)
        mix = weights_init[b:b + 1] if weights_init is not None else y.new_full((1, 2), 0.5)  # (1, 2) line 1
        previous, n_iter, converged = -math.inf, 0, False
        for _ in range(max_iter):  # line 6
            z, log_likelihood = reference_e_step(y, w, means, covariances, mix)  # line 9
            means, covariances, mix = reference_m_step(y, w, z, reg_covar, covariance_type)  # lines 7-8
            n_iter += 1
            if tol > 0 and abs(float(log_likelihood) - previous) < tol:
                converged = True
                break
            previous = float(log_likelihood)
        z, log_likelihood = reference_e_step(y, w, means, covariances, mix)
        results.append((means, covariances, mix, z, log_likelihood, n_iter, converged))
    means, covariances, mix, z, log_likelihood, n_iter, converged = zip(*results, strict=True)
    return GMMResult(means=torch.cat(means), covariances=torch.cat(covariances), weights=torch.cat(mix),
                     resp=torch.cat(z), log_likelihood=torch.cat(log_likelihood).unsqueeze(1),
                     n_iter=torch.tensor(n_iter), converged=torch.tensor(converged), covariance_type=covariance_type)
