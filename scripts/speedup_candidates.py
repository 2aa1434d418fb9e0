"""Exact-equivalent speed-ups of the paper's training step, each measured side by side (results/bench.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/speedup_candidates.py [--repeats 7]

Every candidate must give the same loss (1e-5 relative) on a fixed batch with the same random draws;
this script checks that, then times it against the current path in interleaved rounds
(``locseg.bench.timing``, median):

1. channels-last memory layout of the model and the input (full training step);
2. Eq. 1 with the colour channels summed before the mask multiplies (forward + backward of the loss
   alone, at the step's size): one (B, K, 3, H, W) temporary fewer;
3. glibc's allocator settings (``GLIBC_TUNABLES``, the Makefile's): fresh processes with and without
   them, alternating, each reporting its median step (the setting cannot change inside a process).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from locseg import config as config_lib  # noqa: E402
from locseg.bench.models import _batch  # noqa: E402
from locseg.bench.timing import interleaved, median_time  # noqa: E402
from locseg.models import build_model  # noqa: E402
from locseg.models.segmenter import eq1_loss  # noqa: E402

TUNABLES = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824"


def _model(overrides: list[str]):
    cfg = config_lib.load(ROOT / "configs/multi_dsprites.yaml", overrides)
    torch.manual_seed(0)
    return cfg, build_model(cfg.model, cfg.data.image_size).train()


def _step(model, x: torch.Tensor, opt) -> callable:
    def call() -> float:
        with torch.random.fork_rng():  # the same VAE draws on every call and for every candidate
            torch.manual_seed(1)
            out = model(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()  # lr 0: the parameters stay as they are, so every call does the same work
        return out.loss.item()

    return call


def channels_last(repeats: int, overrides: list[str]) -> dict[str, float]:
    _, model = _model(overrides)
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = _batch(32, 64)
    a = _step(model, x, torch.optim.Adam(model.parameters(), lr=0.0))
    b = _step(other, x.contiguous(memory_format=torch.channels_last), torch.optim.Adam(other.parameters(), lr=0.0))
    rel = abs(a() - b()) / abs(a())
    times = interleaved({"current": a, "channels_last": b}, repeats)
    return {"loss_rel_diff": rel, **{f"{k}_step_s": v for k, v in times.items()}}


def channel_summed_eq1(x, recons, masks, kl, cfg) -> torch.Tensor:
    """Eq. 1 (mask_recon, input target, zeta = 0) with the colour sum taken before the mask multiplies."""
    target = recons * masks  # (B, K, 3, H, W)
    error = (target - x.unsqueeze(1)).pow(2).sum(2, keepdim=True)  # (B, K, 1, H, W)
    prior = target.pow(2).sum(2, keepdim=True)  # (B, K, 1, H, W)
    recon = (masks * error).flatten(1).sum(1)  # (B,)
    prior = cfg.beta * ((1.0 - masks) * prior).flatten(1).sum(1)  # (B,)
    return recon.mean() + prior.mean() + (cfg.gamma * kl.sum(1)).mean()


def loss_layout(repeats: int, overrides: list[str]) -> dict[str, float]:
    cfg = config_lib.load(ROOT / "configs/multi_dsprites.yaml", overrides).model.segmenter
    g = torch.Generator().manual_seed(0)
    B, K, H, W = 32, cfg.num_slots, 64, 64
    x = torch.rand(B, 3, H, W, generator=g)
    recons = torch.rand(B, K, 3, H, W, generator=g).requires_grad_()
    masks = torch.rand(B, K, 1, H, W, generator=g).softmax(1).requires_grad_()
    kl = torch.rand(B, K, generator=g)

    def run(fn):
        def call() -> float:
            recons.grad = masks.grad = None
            loss = fn(x, recons, masks, kl, cfg)
            loss = loss[0] if isinstance(loss, tuple) else loss
            loss.backward()
            return loss.item()

        return call

    current, candidate = run(eq1_loss), run(channel_summed_eq1)
    rel = abs(current() - candidate()) / abs(current())
    times = interleaved({"current": current, "channel_summed": candidate}, repeats)
    return {"loss_rel_diff": rel, **{f"{k}_loss_fwd_bwd_s": v for k, v in times.items()}}


def allocator(repeats: int, overrides: list[str]) -> dict[str, float]:
    results: dict[str, list[float]] = {"default": [], "tunables": []}
    for _ in range(max(1, repeats // 2)):
        for name in results:
            env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            if name == "tunables":
                env["GLIBC_TUNABLES"] = TUNABLES
            out = subprocess.run([sys.executable, __file__, "--child", *overrides], env=env, check=True,
                                 capture_output=True, text=True).stdout
            results[name].append(float(out.strip().splitlines()[-1]))
    return {f"{k}_step_s": sorted(v)[len(v) // 2] for k, v in results.items()}


def _child(overrides: list[str]) -> None:
    _, model = _model(overrides)
    print(median_time(_step(model, _batch(32, 64), torch.optim.Adam(model.parameters(), lr=0.0)), 4))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. model.segmenter.decoder=deconv")
    args = p.parse_args()
    if args.child:
        _child(args.overrides)
        return
    tunables = "set" if os.environ.get("GLIBC_TUNABLES") else "unset"
    print(f"torch threads {torch.get_num_threads()}, GLIBC_TUNABLES {tunables}")
    for name, fn in (("channels_last", channels_last), ("eq1_channel_sum", loss_layout), ("allocator", allocator)):
        print(name, {k: round(v, 6) for k, v in fn(args.repeats, args.overrides).items()}, flush=True)


if __name__ == "__main__":
    main()
