"""Checkpoints: the only module that writes or reads them.

A checkpoint holds the model, optimizer and scheduler states, the step, the RNG states, the
resolved config (as a plain dict) and the locseg version. It is written to a temporary file and
renamed into place, and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from . import config as config_lib
from .config import Config
from .io import atomic_file


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def rng_state() -> dict[str, Any]:
    """Torch RNG states (the only generators locseg draws from during training)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, *, model: nn.Module, cfg: Config, step: int,
         optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
         extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (:func:`locseg.io.atomic_file`: temporary file beside it, then rename)."""
    path = Path(path)
    payload = {
        "version": __version__,
        "step": step,
        "config": config_lib.to_dict(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; its ``config`` is returned as a :class:`Config`."""
    path = Path(path)
    if path.is_dir():
        hint = f"pass {path / 'checkpoint.pt'}" if (path / "checkpoint.pt").is_file() else \
            "pass the checkpoint.pt file inside a run directory"
        raise CheckpointError(f"{path} is a directory, not a checkpoint: {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: pass a checkpoint.pt that locseg train wrote")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises several types (and advice never to follow) for foreign files
        raise CheckpointError(f"cannot read {path}: truncated, or not a checkpoint that locseg train wrote "
                              "(locseg only loads tensors, never arbitrary pickled objects)") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a locseg checkpoint: pass a checkpoint.pt that locseg train wrote")
    try:
        payload["config"] = config_lib.validate(config_lib.from_dict(Config, payload["config"]))
    except config_lib.ConfigError as e:
        raise CheckpointError(f"{path}: its config does not fit this version of locseg: {e}") from None
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode on ``device``: (model, config, payload)."""
    from .models import build_model

    payload = load(path, map_location=device)
    cfg: Config = payload["config"]
    model = build_model(cfg.model, cfg.data.image_size).to(device)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model its config describes: "
                              f"{str(e).splitlines()[0]}") from None
    model.eval()
    return model, cfg, payload
