"""Model registry: every model maps a batch (B, 3, H, W) to a :class:`locseg.types.ModelOutput`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import ModelConfig


def _segmenter(cfg: ModelConfig, image_size: int) -> nn.Module:
    from .segmenter import Segmenter

    return Segmenter(cfg.segmenter, image_size)


def _monet(cfg: ModelConfig, image_size: int) -> nn.Module:
    from .monet import Monet

    return Monet(cfg.monet, image_size)


MODELS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {"segmenter": _segmenter, "monet": _monet}


def build_model(cfg: ModelConfig, image_size: int) -> nn.Module:
    """Instantiate the model named by ``cfg.name`` for square images of side ``image_size``."""
    if cfg.name not in MODELS:
        raise ValueError(f"unknown model {cfg.name!r} (available: {', '.join(MODELS)})")
    return MODELS[cfg.name](cfg, image_size)


def num_slots(cfg: ModelConfig) -> int:
    """K of the configured model."""
    return getattr(cfg, cfg.name).num_slots  # every model has a config section named like it
