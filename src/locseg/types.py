"""The output contract every model returns (the paper's model, MONet, and later baselines)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """What ``model(x)`` returns for a batch ``x`` of shape (B, 3, H, W) with values in [0, 1].

    Attributes:
        recon: (B, 3, H, W) full reconstruction, sum_k masks_k * slot_recons_k.
        masks: (B, K, 1, H, W) non-negative segmentation masks that sum to one over K; slot 0 is
            the background for models that have one.
        slot_recons: (B, K, 3, H, W) per-slot reconstructions.
        locations: (B, K, 2) normalised (y, x) in [0, 1]: the mask-weighted centre of each slot.
        loss: scalar training loss (mean over the batch).
        terms: named scalar loss terms (detached) that add up to ``loss``, for logging.
        extras: model-specific tensors for figures (e.g. ``scopes`` and ``windows`` (B, K, H, W)).
    """

    recon: torch.Tensor
    masks: torch.Tensor
    slot_recons: torch.Tensor
    locations: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def pixel_centres(n: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    """Normalised coordinates of the centres of ``n`` pixels along one side: (i + 0.5) / n, shape (n,).

    The one pixel-centre convention of locseg (locations, GMM features, priors).

    >>> pixel_centres(4).tolist()
    [0.125, 0.375, 0.625, 0.875]
    """
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n  # (n,)


def mask_locations(masks: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mask-weighted centres: (B, K, 1, H, W) or (B, K, H, W) -> (B, K, 2) normalised (y, x).

    A pixel (i, j) sits at ((i + 0.5) / H, (j + 0.5) / W). An all-zero mask gets the image centre.
    """
    if masks.dim() == 5:
        masks = masks[:, :, 0]
    H, W = masks.shape[-2:]
    ys, xs = pixel_centres(H, masks.device, masks.dtype), pixel_centres(W, masks.device, masks.dtype)  # (H,), (W,)
    total = masks.sum(dim=(-2, -1))  # (B, K)
    cy = (masks.sum(dim=-1) * ys).sum(-1)  # (B, K)
    cx = (masks.sum(dim=-2) * xs).sum(-1)  # (B, K)
    centre = torch.stack([cy, cx], dim=-1) / total.clamp_min(eps).unsqueeze(-1)  # (B, K, 2)
    return torch.where((total > eps).unsqueeze(-1), centre, torch.full_like(centre, 0.5))


def check_output(out: ModelOutput, batch: int, slots: int, height: int, width: int, atol: float = 1e-4) -> None:
    """Raise ``AssertionError`` naming the field when ``out`` breaks the contract."""
    B, K, H, W = batch, slots, height, width
    expected = {
        "recon": (B, 3, H, W),
        "masks": (B, K, 1, H, W),
        "slot_recons": (B, K, 3, H, W),
        "locations": (B, K, 2),
    }
    for name, shape in expected.items():
        got = tuple(getattr(out, name).shape)
        assert got == shape, f"{name}: expected shape {shape}, got {got}"
        assert torch.isfinite(getattr(out, name)).all(), f"{name} has NaN or Inf"
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), "loss must be a finite scalar"
    assert out.terms, "terms must name the loss terms"
    assert (out.masks >= -atol).all(), "masks must be non-negative"
    total = out.masks.sum(dim=1)
    assert torch.allclose(total, torch.ones_like(total), atol=atol), "masks must sum to one over K"
    assert ((out.locations >= 0) & (out.locations <= 1)).all(), "locations must lie in [0, 1]"
