"""The paper's model: an encoder-decoder peeling off the background, then one object per step.

Algorithm 2 of the paper, with the background mask of section 2.5 and the loss of Eq. 1::

    s_0 = 1
    for k = 1..K:
        x_re_k = g(x, s_{k-1})                                   # decode
        Q_k    = exp(-s_{k-1} * sum_c (x_re_k - x)^2 / (2 sigma1))  # quality (differentiable)
        L_k    = 1 if k == 1 else localize(x, x_re_k, s_{k-1})   # non-trainable, no gradient
        m_k    = s_{k-1} * Q_k * L_k
        s_k    = s_{k-1} * (1 - Q_k * L_k)
    m_1 := 1 - sum_{k>=2} m_k                                    # section 2.5

Since sum_{k>=2} m_k = s_1 - s_K, the background mask is m_1 = Q_1 + s_K >= 0: it keeps what the
first step explained plus whatever no step explained, and the K masks sum to one exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import SegmenterConfig
from ..localization import localize
from ..localization.quality import quality_map, relative_quality
from ..types import ModelOutput, mask_locations
from .networks import FlatColour, build_network


def eq1_loss(x: torch.Tensor, recons: torch.Tensor, masks: torch.Tensor, kl: torch.Tensor,
             cfg: SegmenterConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 1 of the paper, summed over slots and pixels, averaged over the batch.

    Args:
        x: (B, 3, H, W) input image.
        recons: (B, K, 3, H, W) per-slot reconstructions x_re_k.
        masks: (B, K, 1, H, W) masks m_k (background first).
        kl: (B, K) KL divergence of each slot's latent code.
        cfg: beta, zeta, gamma and ``mask_recon`` (x_re := m_k * x_re inside the loss; with
            ``mask_recon_grad`` False the m_k of that product is a constant); ``recon_target``
            "masked" reads x^{gt,(k)} as m_k * x.

    Returns:
        the scalar loss and its weighted terms ``recon``, ``prior``, ``kl`` (they add up to it).
    """
    gate = masks if cfg.mask_recon_grad else masks.detach()  # (B, K, 1, H, W)
    if cfg.mask_recon:
        target = recons * gate  # (B, K, 3, H, W) x_re := m * x_re
    else:
        target = recons  # (B, K, 3, H, W)
    truth = x.unsqueeze(1)  # (B, 1, 3, H, W) x^{gt,(k)} = x
    if cfg.recon_target == "masked":
        truth = truth * gate  # (B, K, 3, H, W) x^{gt,(k)} = m_k * x
    recon = (masks * (target - truth).pow(2)).flatten(1).sum(1)  # (B,)
    prior = cfg.beta * ((1.0 - masks) * (target - cfg.zeta).pow(2)).flatten(1).sum(1)  # (B,)
    kl_term = cfg.gamma * kl.sum(1)  # (B,)
    terms = {"recon": recon.mean(), "prior": prior.mean(), "kl": kl_term.mean()}
    return terms["recon"] + terms["prior"] + terms["kl"], {k: v.detach() for k, v in terms.items()}


def with_background(objects: list[torch.Tensor]) -> torch.Tensor:
    """Section 2.5: m_1 = 1 - sum_{k>=2} m_k in front of the object masks.

    Args:
        objects: K - 1 object masks m_k, each (B, H, W).

    Returns:
        (B, K, 1, H, W) masks, background first, summing to one over K.
    """
    stacked = torch.stack(objects, dim=1)  # (B, K-1, H, W)
    background = 1.0 - stacked.sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return torch.cat([background, stacked], dim=1).unsqueeze(2)  # (B, K, 1, H, W)


class Segmenter(nn.Module):
    """Iterative encoder-decoder with the explicit localization module (the paper's model).

    The scope enters the network as a fourth input channel: g_theta(cat(x, s_{k-1})). The scope fed
    to the network is detached (it is an input, as in MONet's component VAE); gradients still flow
    through Q_k into every mask and scope used by the loss, while L_k is a constant.
    """

    def __init__(self, cfg: SegmenterConfig, image_size: int = 64):
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        self.net = build_network(cfg.arch, cfg.channels, cfg.latent_dim, image_size, cfg.decoder)
        self.background_net = FlatColour() if cfg.background == "flat" else None

    @property
    def num_slots(self) -> int:
        return self.cfg.num_slots

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Segment a batch ``x`` (B, 3, H, W) in [0, 1] into K slots; see :class:`ModelOutput`."""
        loc_cfg = self.cfg.localization
        B, _, H, W = x.shape
        scope = x.new_ones(B, H, W)  # (B, H, W) s_0
        recons, raw_masks, kls, scopes, windows = [], [], [], [scope], []
        sigma_objects = self.cfg.sigma1_objects or loc_cfg.sigma1
        for k in range(self.cfg.num_slots):
            inputs = torch.cat([x, scope.detach().unsqueeze(1)], dim=1)  # (B, 4, H, W)
            net = self.background_net if (k == 0 and self.background_net is not None) else self.net
            x_re, kl = net(inputs)  # (B, 3, H, W), (B,)
            if k == 0:
                if self.cfg.bg_quality == "relative":
                    q = relative_quality(x, x_re, scope, self.cfg.bg_rel_scale, self.cfg.bg_sigma_floor)
                else:
                    q = quality_map(x, x_re, scope, loc_cfg.sigma1, loc_cfg.sigma_squared)  # (B, H, W)
                loc = torch.ones_like(q)  # L_1 = 1: no localization for the background
                window = loc
            else:
                q = quality_map(x, x_re, scope, sigma_objects, loc_cfg.sigma_squared)  # (B, H, W)
                found = localize(x, x_re.detach(), scope.detach(), loc_cfg, quality=q.detach())
                loc, window = found.L, found.window  # (B, H, W) constants
            raw_masks.append(scope * q * loc)  # (B, H, W) m_k
            scope = scope * (1.0 - q * loc)  # (B, H, W) s_k
            recons.append(x_re)
            kls.append(kl)
            scopes.append(scope)
            windows.append(window)
        masks = with_background(raw_masks[1:])  # (B, K, 1, H, W) section 2.5
        slot_recons = torch.stack(recons, dim=1)  # (B, K, 3, H, W)
        kl = torch.stack(kls, dim=1)  # (B, K)
        loss, terms = eq1_loss(x, slot_recons, masks, kl, self.cfg)
        recon = (masks * slot_recons).sum(dim=1)  # (B, 3, H, W)
        return ModelOutput(
            recon=recon,
            masks=masks,
            slot_recons=slot_recons,
            locations=mask_locations(masks.detach()),
            loss=loss,
            terms=terms,
            extras={
                "scopes": torch.stack(scopes[:-1], dim=1).detach(),  # (B, K, H, W) s_{k-1}
                "windows": torch.stack(windows, dim=1).detach(),  # (B, K, H, W) Butterworth windows
                "raw_background": raw_masks[0].detach(),  # (B, H, W) s_0 Q_1
            },
        )
