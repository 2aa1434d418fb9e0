"""Shared, seeded tiny inputs."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A generated colored_on_grayscale dataset: 64 train and 16 test images."""
    from locseg.data import multi_dsprites

    out = tmp_path_factory.mktemp("data") / "md"
    multi_dsprites.generate(out, "colored_on_grayscale", num_train=64, num_test=16, seed=0, progress=False)
    return out


@pytest.fixture
def tiny_batch():
    """(2, 3, 32, 32) images: grey background with two coloured squares each."""
    x = torch.full((2, 3, 32, 32), 0.5)
    x[0, :, 4:12, 4:12] = torch.tensor([1.0, 0.1, 0.1]).view(3, 1, 1)
    x[0, :, 18:28, 16:26] = torch.tensor([0.1, 0.9, 0.2]).view(3, 1, 1)
    x[1, :, 10:20, 20:30] = torch.tensor([0.2, 0.2, 1.0]).view(3, 1, 1)
    x[1, :, 2:8, 2:14] = torch.tensor([0.9, 0.9, 0.1]).view(3, 1, 1)
    return x
