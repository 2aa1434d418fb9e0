"""The data path against the training step it feeds: the loader must never be the bottleneck.

One batch as ``fit`` makes it: ``batch_indices`` (a function of seed and step), a gather from the
memory-mapped ``images.npy`` and ``inference.to_tensor`` (uint8 -> float, resize when the sizes
differ), on a Multi-dSprites split generated into a temporary folder. Timed in interleaved rounds
(:mod:`.timing`) with one training step of the paper's model on a batch of the same size;
``loader_fraction`` is the loader's time over the step's (training waits for data only when it
is >= 1, since ``fit`` loads synchronously, the fraction is also the share the loader adds).
"""

from __future__ import annotations

import itertools
import logging
import tempfile

import torch

from ..data import load_split, multi_dsprites
from ..inference import to_tensor
from ..train import batch_indices
from .models import _batch, _build, _train_step
from .timing import interleaved

log = logging.getLogger(__name__)


def run(json_output: bool = False, quick: bool = False, batch: int = 32, size: int = 64, slots: int = 6,
        num_images: int = 0, steps: int = 0, device: str = "cpu") -> dict[str, float]:
    """Seconds per batch of the loader and of the training step, measured side by side.

    Returns:
        ``loader_s``, ``train_step_s`` (medians), ``loader_img_s``, ``train_img_s`` and
        ``loader_fraction`` (loader / step), with the sizes used.
    """
    del json_output  # the same numbers either way
    num_images = num_images or (256 if quick else 4096)
    steps = steps or (2 if quick else 8)
    batch = 8 if quick else batch
    dev = torch.device(device)
    with tempfile.TemporaryDirectory(prefix="locseg-bench-data-") as tmp:
        multi_dsprites.generate(tmp, "colored_on_grayscale", num_train=num_images, num_test=batch, seed=0,
                                progress=False, overwrite=True)
        images = load_split(tmp, "train")["images"]
        counter = itertools.count()

        def load() -> torch.Tensor:  # a new step each call, so each batch is a fresh gather
            idx = batch_indices(len(images), batch, next(counter), 0)
            return to_tensor(images[idx], dev, size)  # (B, 3, size, size)

        model, opt = _build("ours", slots, size, dev)
        x = _batch(batch, size).to(dev)
        times = interleaved({"loader": load, "train_step": lambda: _train_step(model, opt, x)}, steps, device=dev)
    result = {"batch": float(batch), "image_size": float(size), "num_images": float(num_images),
              "loader_s": times["loader"], "train_step_s": times["train_step"],
              "loader_img_s": batch / times["loader"], "train_img_s": batch / times["train_step"],
              "loader_fraction": times["loader"] / times["train_step"]}
    log.info("loader %.2f ms vs training step %.1f ms per batch of %d", 1e3 * times["loader"],
             1e3 * times["train_step"], batch)
    return result
