"""Training throughput of the paper's model vs MONet at the same batch, resolution and K.

One training step = forward + backward + Adam step on a batch of random-content images. Both
models are timed in the same process, alternating, after warm-up steps; peak memory is the CUDA
peak on GPU, and on CPU the growth of the peak resident set (VmHWM) of a fresh process that
builds the model and runs two training steps, over its resident set after imports.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from .. import config as config_lib
from ..models import build_model

log = logging.getLogger(__name__)


def _batch(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Grey backgrounds with a few coloured rectangles: realistic work for the localization module."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 1, 1, generator=g).expand(batch, 3, size, size).clone()  # (B, 3, H, W)
    for b in range(batch):
        for _ in range(3):
            h, w = torch.randint(size // 8, size // 3, (2,), generator=g).tolist()
            y0, x0 = torch.randint(0, size - max(h, w), (2,), generator=g).tolist()
            x[b, :, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=g)
    return x


def _rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process in MB; ru_maxrss where /proc is missing.

    VmHWM belongs to the process image, unlike ru_maxrss, which Linux carries over from the parent
    across exec (a spawned child would report the parent's peak).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(name: str, slots: int, size: int, device: torch.device):
    overrides = [f"model.segmenter.num_slots={slots}", f"model.monet.num_slots={slots}"]
    path = {"ours": "configs/multi_dsprites.yaml", "monet": "configs/monet_multi_dsprites.yaml"}[name]
    if Path(path).is_file():
        cfg = config_lib.load(path, overrides)
    else:  # run outside the repository: the built-in defaults
        cfg = config_lib.load(overrides=[*overrides, f"model.name={'segmenter' if name == 'ours' else 'monet'}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, size).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def _train_step(model, opt, x: torch.Tensor) -> None:
    out = model(x)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    opt.step()


def _memory_child(name: str, slots: int, size: int, batch: int, queue) -> None:
    """In a fresh process: peak resident memory growth (MB) over two training steps."""
    device = torch.device("cpu")
    x = _batch(batch, size)
    before = _rss_mb("VmRSS")
    model, opt = _build(name, slots, size, device)
    for _ in range(2):
        _train_step(model, opt, x)
    queue.put(_rss_mb("VmHWM") - before)


def _cpu_peak_memory(name: str, slots: int, size: int, batch: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(name, slots, size, batch, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return float(value)


def run(json_output: bool = False, quick: bool = False, batch: int = 32, size: int = 64, slots: int = 6,
        steps: int = 0, device: str = "cpu") -> dict[str, float]:
    """Measure training images/s and peak memory of both models; returns a dict of numbers."""
    steps = steps or (2 if quick else 8)
    batch = 8 if quick else batch
    dev = torch.device(device)
    x = _batch(batch, size).to(dev)
    result: dict[str, float] = {"batch": batch, "image_size": size, "num_slots": slots, "steps": steps}
    models = {name: _build(name, slots, size, dev) for name in ("ours", "monet")}
    for name, (model, opt) in models.items():  # warm-up, and the memory peak of each model
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _train_step(model, opt, x)
        _train_step(model, opt, x)
        if dev.type == "cuda":
            result[f"{name}_peak_mem_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        else:
            result[f"{name}_peak_mem_mb"] = _cpu_peak_memory(name, slots, size, batch)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):  # alternate so both see the same machine state
        for name, (model, opt) in models.items():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            _train_step(model, opt, x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        median = sorted(ts)[len(ts) // 2]
        result[f"{name}_img_s"] = batch / median
        result[f"{name}_step_s"] = median
        result[f"{name}_params"] = float(sum(p.numel() for p in models[name][0].parameters()))
    result["speed_ratio"] = result["ours_img_s"] / result["monet_img_s"]
    log.info("ours %.1f img/s, monet %.1f img/s", result["ours_img_s"], result["monet_img_s"])
    return result

