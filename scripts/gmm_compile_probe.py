"""Probe: one EM iteration of the batched GMM, eager against ``torch.compile`` (results/bench.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gmm_compile_probe.py

One iteration (E-step, sufficient statistics, M-step, Cholesky and the next log-density
coefficients) of 64 weighted 2-component GMMs over 366 pixels of 5 features, float64, written
without the data-dependent branches of ``gmm._fit`` so that it compiles to one graph. Prints the
compile time, the largest differences of the log-likelihood and the coefficients after 10
iterations, and the median time per iteration of each version (two interleaved rounds).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from locseg.localization import gmm  # noqa: E402

B, N, D = 64, 366, 5
P = D * (D + 1) // 2  # quadratic terms of the design
REG = 1e-4


def iteration(phi, phi_wmean, weights, weights_normalised, theta, mix, symmetric, pair_flat, pair_scale):
    """One EM step from coefficients theta (B, 2, F): (log-likelihood (B,), next theta, next mix)."""
    log_odds = (theta[:, 1:] - theta[:, :1]) @ phi  # (B, 1, N)
    softplus = F.softplus(log_odds.squeeze(1), threshold=50.0)  # (B, N)
    log_likelihood = (torch.linalg.vecdot(phi_wmean, theta[:, 0])
                      + torch.linalg.vecdot(weights_normalised, softplus))  # (B,)
    signs = torch.tensor([-1.0, 1.0], dtype=phi.dtype).view(1, 2, 1)
    stats = (torch.sigmoid(log_odds * signs) * weights.unsqueeze(1)) @ phi.mT  # (B, 2, F)
    count = stats[..., -1] + 10 * torch.finfo(stats.dtype).eps  # (B, 2)
    scaled = stats / count.unsqueeze(-1)  # (B, 2, F)
    second = scaled.index_select(-1, symmetric).unflatten(-1, (D, D))  # (B, 2, D, D)
    means = scaled[..., P:P + D]  # (B, 2, D)
    covariances = second - means.unsqueeze(-1) * means.unsqueeze(-2) + REG * torch.eye(D, dtype=phi.dtype)
    new_mix = count / count.sum(-1, keepdim=True)  # (B, 2)
    chol = torch.linalg.cholesky(covariances)  # (B, 2, D, D)
    precision = torch.cholesky_inverse(chol)
    half_log_det = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (B, 2)
    quadratic = precision.flatten(-2).index_select(-1, pair_flat) * pair_scale  # (B, 2, P)
    linear = precision @ means.unsqueeze(-1)  # (B, 2, D, 1)
    mahalanobis = (means.unsqueeze(-2) @ linear).view_as(half_log_det)  # (B, 2)
    constant = new_mix.log() - (half_log_det + 0.5 * mahalanobis)  # (B, 2)
    return log_likelihood, torch.cat([quadratic, linear.squeeze(-1), constant.unsqueeze(-1)], -1), new_mix


def main() -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    features = torch.rand(B, N, D, generator=g)
    weights = (torch.rand(B, N, generator=g) > 0.05).double()
    design = gmm._design(features, weights)
    means = torch.rand(B, 2, D, generator=g).double()
    covariances = gmm._initial_covariances(design, means, REG, "full")
    mix = torch.full((B, 2), 0.5, dtype=torch.float64)
    theta0 = gmm._log_density_coefficients(design, means, covariances, mix)
    t = design.tables

    def run(step, iterations: int = 10):
        theta, m = theta0, mix
        for _ in range(iterations):
            ll, theta, m = step(design.phi, design.phi_wmean, design.weights, design.weights_normalised,
                                theta, m, t.symmetric, t.pair_flat, t.pair_scale)
        return ll, theta

    start = time.perf_counter()
    compiled = torch.compile(iteration, dynamic=False)
    ll_c, theta_c = run(compiled)
    print(f"compile {time.perf_counter() - start:.1f} s")
    ll_e, theta_e = run(iteration)
    print(f"max difference: log-likelihood {(ll_e - ll_c).abs().max():.1e}, "
          f"coefficients {(theta_e - theta_c).abs().max():.1e}")
    for name, step in (("eager", iteration), ("compiled", compiled)) * 2:
        times = []
        for _ in range(21):
            start = time.perf_counter()
            run(step)
            times.append(time.perf_counter() - start)
        print(f"{name}: {sorted(times)[10] * 1e3 / 10:.3f} ms per iteration")


if __name__ == "__main__":
    main()
