"""Non-trainable baselines behind the same output contract as the trained models.

They keep every reported number honest: a learned model shows something only above them. Each maps
a batch (B, 3, H, W) in [0, 1] to a :class:`ModelOutput` with K one-hot masks (slot 0 is the
background where the method has one), so ``evaluate``, ``segment`` and the figures treat them like
any model. Their loss is zero; they have no parameters to train.

- ``kmeans-rgb``: per-image k-means (k = K) on pixel colour.
- ``kmeans-rgbxy``: per-image k-means on colour and normalised position (y, x).
- ``connected-components``: pixels that differ from the image's most frequent colour, split into
  8-connected components; the K - 1 largest are the objects, the rest join the background.
- ``connected-components-nonblack``: the same with black pixels as the background (Montezuma's
  Revenge: a black background whose coloured walls are not background to this rule).
- ``one-segment``: every pixel in slot 0; the floor of any score over object pixels (AMI and ARI 0).
- ``oracle``: the localization module run with a perfect background and perfect reconstructions:
  the background step explains exactly the pixels of the image's most frequent colour (the true
  background of the flat-background datasets), each object step reconstructs the image exactly
  (Q = 1), and the configured module (box filter, Butterworth window, GMM) cuts out one object per
  step from what is left. It is the ceiling of the module on these data.
- ``whole-image`` and ``centre-ellipse``: saliency priors for one-object photographs (Flowers):
  two slots, the foreground being every pixel or a centred ellipse (``models/saliency.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..config import LocalizationConfig
from ..localization import localize
from ..types import ModelOutput, mask_locations
from .segmenter import with_background


def modal_colour_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H, W) bool: pixels of each image's most frequent colour (8-bit exact)."""
    codes = (x * 255).round().long()  # (B, 3, H, W)
    codes = (codes[:, 0] * 256 + codes[:, 1]) * 256 + codes[:, 2]  # (B, H, W)
    modes = codes.flatten(1).mode(dim=1).values  # (B,)
    return codes == modes.view(-1, 1, 1)  # (B, H, W)


def labels_to_output(x: torch.Tensor, labels: torch.Tensor, num_slots: int,
                     extras: dict[str, torch.Tensor] | None = None) -> ModelOutput:
    """One-hot masks from (B, H, W) slot labels in [0, K): the common output of the baselines."""
    masks = torch.nn.functional.one_hot(labels, num_slots).permute(0, 3, 1, 2).to(x.dtype)  # (B, K, H, W)
    masks = masks.unsqueeze(2)  # (B, K, 1, H, W)
    slot_recons = (masks * x.unsqueeze(1)).sum((3, 4)) / masks.sum((3, 4)).clamp_min(1)  # (B, K, 3) mean colour
    slot_recons = slot_recons[..., None, None].expand(-1, -1, -1, *x.shape[-2:])  # (B, K, 3, H, W)
    zero = x.new_zeros(())
    return ModelOutput(recon=(masks * slot_recons).sum(1), masks=masks, slot_recons=slot_recons,
                       locations=mask_locations(masks), loss=zero, terms={"none": zero}, extras=extras or {})


def _order_by_size(labels: np.ndarray, num_slots: int) -> np.ndarray:
    """Relabel clusters by decreasing size: the largest becomes slot 0 (the background)."""
    counts = np.bincount(labels.ravel(), minlength=num_slots)
    rank = np.empty_like(counts)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    return rank[labels]


class Baseline(nn.Module):
    """Base class: no parameters, eval-only, ``num_slots`` slots."""

    def __init__(self, num_slots: int):
        super().__init__()
        if num_slots < 2:
            raise ValueError(f"a baseline needs at least 2 slots, got {num_slots}")
        self.num_slots = num_slots


class KMeansBaseline(Baseline):
    """Per-image k-means (scikit-learn) on colour, or on colour and position (y, x) in [0, 1]."""

    def __init__(self, num_slots: int, use_position: bool = False, seed: int = 0):
        super().__init__(num_slots)
        self.use_position = use_position
        self.seed = seed

    def forward(self, x: torch.Tensor) -> ModelOutput:
        from sklearn.cluster import KMeans

        B, _, H, W = x.shape
        labels = np.zeros((B, H, W), dtype=np.int64)
        ys, xs = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
        for b in range(B):
            feats = x[b].permute(1, 2, 0).reshape(-1, 3).double().cpu().numpy()  # (HW, 3)
            if self.use_position:
                feats = np.concatenate([feats, ys.reshape(-1, 1), xs.reshape(-1, 1)], axis=1)  # (HW, 5)
            k = min(self.num_slots, len(np.unique(feats, axis=0)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit_predict(feats)
            labels[b] = _order_by_size(found, self.num_slots).reshape(H, W)
        return labels_to_output(x, torch.from_numpy(labels).to(x.device), self.num_slots)


def black_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H, W) bool: pixels whose 8-bit colour is (0, 0, 0)."""
    return (x * 255).round().amax(1) == 0  # (B, H, W)


class ConnectedComponents(Baseline):
    """8-connected components of the non-background pixels.

    ``background``: "modal" (the image's most frequent colour) or "black" (colour (0, 0, 0)).
    """

    def __init__(self, num_slots: int, background: str = "modal"):
        super().__init__(num_slots)
        if background not in ("modal", "black"):
            raise ValueError(f"unknown background rule {background!r} (choose modal or black)")
        self.background = background

    def forward(self, x: torch.Tensor) -> ModelOutput:
        rule = modal_colour_mask if self.background == "modal" else black_mask
        background = rule(x).cpu().numpy()  # (B, H, W)
        labels = np.zeros(background.shape, dtype=np.int64)
        for b in range(len(background)):
            comps, n = ndimage.label(~background[b], structure=np.ones((3, 3)))
            if n == 0:
                continue
            sizes = np.bincount(comps.ravel())[1:]  # (n,)
            keep = np.argsort(-sizes, kind="stable")[: self.num_slots - 1] + 1  # component ids
            lookup = np.zeros(n + 1, dtype=np.int64)
            lookup[keep] = np.arange(1, len(keep) + 1)
            labels[b] = lookup[comps]
        return labels_to_output(x, torch.from_numpy(labels).to(x.device), self.num_slots)


class OneSegment(Baseline):
    """Every pixel in slot 0 (the background); the other slots are empty."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        B, _, H, W = x.shape
        return labels_to_output(x, torch.zeros(B, H, W, dtype=torch.long, device=x.device), self.num_slots)


class Oracle(Baseline):
    """The localization module with a perfect background step and perfect reconstructions."""

    def __init__(self, num_slots: int, config: LocalizationConfig):
        super().__init__(num_slots)
        self.config = config

    def forward(self, x: torch.Tensor) -> ModelOutput:
        B, _, H, W = x.shape
        background = modal_colour_mask(x).to(x.dtype)  # (B, H, W) Q_1: 1 on the true background
        scope = 1.0 - background  # (B, H, W) s_1
        objects, windows = [], [torch.ones_like(scope)]
        for _ in range(self.num_slots - 1):
            found = localize(x, x, scope, self.config, quality=torch.ones_like(scope))
            objects.append(scope * found.L)  # (B, H, W) m_k = s Q L with Q = 1
            windows.append(found.window)
            scope = scope * (1.0 - found.L)
        masks = with_background(objects)  # (B, K, 1, H, W) section 2.5
        slot_recons = x.unsqueeze(1).expand(-1, self.num_slots, -1, -1, -1)  # (B, K, 3, H, W)
        zero = x.new_zeros(())
        return ModelOutput(recon=x, masks=masks, slot_recons=slot_recons, locations=mask_locations(masks),
                           loss=zero, terms={"none": zero},
                           extras={"raw_background": background, "windows": torch.stack(windows, 1)})


class SaliencyPrior(Baseline):
    """Two slots (background, foreground) from a fixed foreground mask that ignores the image."""

    def __init__(self, kind: str):
        super().__init__(2)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> ModelOutput:
        from .saliency import centred_ellipse_mask, whole_image_mask

        B, _, H, W = x.shape
        fg = whole_image_mask(B, H, W, x.device) if self.kind == "whole-image" else centred_ellipse_mask(
            B, H, W, device=x.device)  # (B, H, W)
        return labels_to_output(x, fg.long(), 2)


BASELINES = ("kmeans-rgb", "kmeans-rgbxy", "connected-components", "oracle", "whole-image", "centre-ellipse",
             "connected-components-nonblack", "one-segment")


def build_baseline(name: str, num_slots: int, localization: LocalizationConfig | None = None) -> Baseline:
    """The baseline called ``name`` (one of :data:`BASELINES`) with ``num_slots`` slots."""
    if name == "kmeans-rgb":
        return KMeansBaseline(num_slots)
    if name == "kmeans-rgbxy":
        return KMeansBaseline(num_slots, use_position=True)
    if name == "connected-components":
        return ConnectedComponents(num_slots)
    if name == "connected-components-nonblack":
        return ConnectedComponents(num_slots, background="black")
    if name == "one-segment":
        return OneSegment(num_slots)
    if name == "oracle":
        return Oracle(num_slots, localization or LocalizationConfig(gmm_init="window"))
    if name in ("whole-image", "centre-ellipse"):
        return SaliencyPrior(name)  # always two slots
    raise ValueError(f"unknown baseline {name!r} (available: {', '.join(BASELINES)})")
