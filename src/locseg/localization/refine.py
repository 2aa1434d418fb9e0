"""An optional refinement of Algorithm 1's cut: split the object component again by colour.

With two components, a window holding the object at its centre and two other objects can only
separate "object" from "rest" if the object's colour is the odd one out; otherwise the object's
component also takes a neighbour. :func:`refine_object` fits another weighted 2-GMM to the pixels
the object component holds (weights w * z_object), started from the centre pixel and from the
pixels whose colour is far from it, and keeps the centre's sub-component where the two sub-means
differ in colour by more than ``refine_gap``. A single-coloured object is never split (no pixel is
far from the centre colour, or the sub-means' colours coincide). Off by default (``refine: 0``).
"""

from __future__ import annotations

import torch

from ..config import LocalizationConfig
from .gmm import fit_gmm, object_component


@torch.no_grad()
def refine_object(features: torch.Tensor, weights: torch.Tensor, local: torch.Tensor, centre_index: torch.Tensor,
                  config: LocalizationConfig) -> torch.Tensor:
    """``config.refine`` rounds of colour-gated 2-GMM splits of the object component.

    Args:
        features: (B, N, C + 2) pixel features (colour, y, x).
        weights: (B, N) GMM weights w of the first fit.
        local: (B, N) the object component's responsibility z_object.
        centre_index: (B,) long index of the window's centre pixel among the N.
        config: ``refine``, ``refine_gap``, ``covariance``, ``reg_covar``, ``em_iters``, ``em_tol``.

    Returns:
        (B, N) the refined object responsibility (``local`` where no split was accepted).
    """
    B, N, D = features.shape
    colour = features[..., :-2]  # (B, N, C)
    centre = features.gather(1, centre_index.view(B, 1, 1).expand(B, 1, D))  # (B, 1, D)
    far = ((colour - centre[..., :-2]).norm(dim=-1) > config.refine_gap).to(features.dtype)  # (B, N)
    for _ in range(config.refine):
        w = (weights * local).to(features.dtype)  # (B, N) the object component's pixels
        w_far = w * far  # (B, N)
        has_far = w_far.sum(1) >= 2.0  # (B,) enough mass of another colour to start a component
        mu_far = (w_far.unsqueeze(1) @ features).squeeze(1) / w_far.sum(1, keepdim=True).clamp_min(1e-12)  # (B, D)
        mu_far = torch.where(has_far.view(B, 1), mu_far, centre[:, 0])  # (B, D)
        fit = fit_gmm(features, w, torch.stack([mu_far, centre[:, 0]], dim=1), covariance_type=config.covariance,
                      reg_covar=config.reg_covar, max_iter=config.em_iters, tol=config.em_tol)
        component = object_component(fit.resp, centre_index, "centre")  # (B,)
        sub = fit.resp.gather(2, component.view(B, 1, 1).expand(B, N, 1)).squeeze(2).to(local.dtype)  # (B, N)
        gap = (fit.means[:, 0, :-2] - fit.means[:, 1, :-2]).norm(dim=-1)  # (B,) colour distance of the sub-means
        accept = has_far & (gap > config.refine_gap) & torch.isfinite(sub).all(1)  # (B,)
        local = torch.where(accept.view(B, 1), local * sub, local)  # (B, N)
    return local
