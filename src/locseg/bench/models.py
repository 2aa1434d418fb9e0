"""Training throughput of the paper's model vs MONet and vs its old path, at the same batch, resolution and K.

One training step = forward + backward + Adam step on a batch of random-content images. Three
models are timed in the same process in interleaved rounds (median, :mod:`.timing`): ``ours`` (the
paper's model as ``configs/multi_dsprites.yaml`` sets it up), ``ours_old`` (the same with the old
``decoder: deconv`` path the config used before) and ``monet``. Beside them, in the same rounds, one
large convolution (B=32, 64 -> 64 channels, 3x3, 64x64) gives the machine's practical ceiling in
GFLOP/s, next to the GFLOP/s the paper's model achieves (FLOPs of one training step counted with
``torch.utils.flop_counter.FlopCounterMode``, over its median time). Peak memory is the CUDA
peak on GPU, and on CPU the growth of the peak resident set (VmHWM) of a fresh process that
builds the model and runs two training steps, over its resident set after imports.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
from pathlib import Path

import torch

from .. import config as config_lib
from ..models import build_model
from .timing import interleaved

#: name -> (config file, extra overrides); "ours_old" is the paper's model on its old decoder path
MODELS = {"ours": ("configs/multi_dsprites.yaml", []),
          "ours_old": ("configs/multi_dsprites.yaml", ["model.segmenter.decoder=deconv"]),
          "monet": ("configs/monet_multi_dsprites.yaml", [])}

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
    path, extra = MODELS[name]
    overrides = [f"model.segmenter.num_slots={slots}", f"model.monet.num_slots={slots}", *extra]
    if Path(path).is_file():
        cfg = config_lib.load(path, overrides)
    else:  # run outside the repository: the built-in defaults
        cfg = config_lib.load(overrides=[*overrides, f"model.name={'monet' if name == 'monet' else 'segmenter'}"])
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


def train_step_flops(model, opt, x: torch.Tensor) -> float:
    """FLOPs of one training step (forward + backward; the optimiser's element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        _train_step(model, opt, x)
    return float(counter.get_total_flops())


def _large_conv(batch: int, size: int, channels: int, device: torch.device):
    """One 3x3 convolution (the machine's practical ceiling): the call and its FLOPs."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device)
    x = torch.randn(batch, channels, size, size, device=device)

    def call() -> None:
        with torch.no_grad():
            conv(x)

    return call, 2.0 * batch * channels * channels * 9 * size * size


def run(json_output: bool = False, quick: bool = False, batch: int = 32, size: int = 64, slots: int = 6,
        steps: int = 0, device: str = "cpu") -> dict[str, float]:
    """Training images/s, peak memory and GFLOP/s of the paper's model, its old path and MONet.

    Returns:
        per model ``<name>_img_s``, ``<name>_step_s``, ``<name>_params``, ``<name>_peak_mem_mb``;
        ``speed_ratio`` (ours / MONet), ``speedup_vs_old`` (ours / ours_old), ``ours_gflop_per_step``,
        ``ours_gflop_s``, ``conv_gflop_s`` (one large convolution, same rounds) and
        ``ours_fraction_of_conv`` (the model's GFLOP/s over the convolution's).
    """
    del json_output  # the same numbers either way
    steps = steps or (2 if quick else 8)
    batch, size = (8, 32) if quick else (batch, size)
    dev = torch.device(device)
    x = _batch(batch, size).to(dev)
    result: dict[str, float] = {"batch": batch, "image_size": size, "num_slots": slots, "steps": steps}
    models = {name: _build(name, slots, size, dev) for name in MODELS}
    for name, (model, opt) in models.items():  # warm-up, and the memory peak of each model
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        _train_step(model, opt, x)
        _train_step(model, opt, x)
        if dev.type == "cuda":
            result[f"{name}_peak_mem_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        elif not (quick and name == "ours_old"):  # a fresh process each: the quick run skips one
            result[f"{name}_peak_mem_mb"] = _cpu_peak_memory(name, slots, size, batch)
    flops = train_step_flops(*models["ours"], x)
    conv, conv_flops = _large_conv(8 if quick else 32, 32 if quick else 64, 64, dev)
    calls = {name: (lambda m=model, o=opt: _train_step(m, o, x)) for name, (model, opt) in models.items()}
    times = interleaved({**calls, "conv": conv}, repeats=steps, warmup=0, device=dev)
    for name, (model, _) in models.items():
        result[f"{name}_img_s"] = batch / times[name]
        result[f"{name}_step_s"] = times[name]
        result[f"{name}_params"] = float(sum(p.numel() for p in model.parameters()))
    result["speed_ratio"] = result["ours_img_s"] / result["monet_img_s"]
    result["speedup_vs_old"] = result["ours_img_s"] / result["ours_old_img_s"]
    result["ours_gflop_per_step"] = flops / 1e9
    result["ours_gflop_s"] = flops / 1e9 / times["ours"]
    result["conv_gflop_s"] = conv_flops / 1e9 / times["conv"]
    result["ours_fraction_of_conv"] = result["ours_gflop_s"] / result["conv_gflop_s"]
    log.info("ours %.1f img/s (old path %.1f), monet %.1f img/s; ours %.1f GFLOP/s vs conv %.1f GFLOP/s",
             result["ours_img_s"], result["ours_old_img_s"], result["monet_img_s"], result["ours_gflop_s"],
             result["conv_gflop_s"])
    return result
