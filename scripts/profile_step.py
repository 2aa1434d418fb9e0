"""Profile one training step of the paper's model and print where its time goes (results/bench.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/profile_step.py [--config configs/multi_dsprites.yaml]
        [--batch 32] [--steps 5] [--channels-last] [override ...]

A training step (Adam, batch 32 of 64x64 images, K = 6 by default) runs under ``torch.profiler``;
its parts are labelled with ``record_function``: the encoder-decoder's forward passes (one per slot),
the localization module (``localize``, K - 1 calls), Eq. 1 (the loss), the rest of the forward pass
(quality maps, masks, scopes, locations), the backward pass (gradients of every part, mostly the
encoder-decoder's) and the optimiser (zero_grad + Adam). "Python and dispatch overhead" is the step's
wall time minus the time spent inside operators (the profiler's self time of every ``aten`` op).
The profiler adds overhead of its own; the unprofiled median step time is printed beside it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from locseg import config as config_lib  # noqa: E402
from locseg.bench.models import _batch  # noqa: E402
from locseg.bench.timing import median_time  # noqa: E402
from locseg.models import build_model  # noqa: E402
from locseg.models import segmenter as segmenter_module  # noqa: E402

PARTS = ("encoder_decoder_forward", "localization", "loss", "backward", "optimizer")


def _labelled(fn, name: str):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/multi_dsprites.yaml")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (after 2 warm-up steps)")
    p.add_argument("--channels-last", action="store_true", help="model and input in channels-last layout")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. model.segmenter.decoder=deconv")
    args = p.parse_args()

    cfg = config_lib.load(args.config, args.overrides)
    size = cfg.data.image_size
    torch.manual_seed(0)
    model = build_model(cfg.model, size).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = _batch(args.batch, size)
    if args.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    # label the parts: the network's forward, the localization module and Eq. 1 as the model calls them
    model.net.forward = _labelled(model.net.forward, "encoder_decoder_forward")
    segmenter_module.localize = _labelled(segmenter_module.localize, "localization")
    segmenter_module.eq1_loss = _labelled(segmenter_module.eq1_loss, "loss")

    def step() -> None:
        with record_function("forward"):
            out = model(x)
        with record_function("optimizer"):
            opt.zero_grad(set_to_none=True)
        with record_function("backward"):
            out.loss.backward()
        with record_function("optimizer"):
            opt.step()

    seconds = median_time(step, repeats=args.steps, warmup=2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            with record_function("step"):
                step()
    totals: dict[str, float] = {}
    self_ops = 0.0
    for event in prof.key_averages():
        if event.key in (*PARTS, "forward", "step"):
            totals[event.key] = event.cpu_time_total / 1e6 / args.steps  # seconds per step
        elif not event.key.startswith("autograd::") and event.key != "ProfilerStep*":
            self_ops += event.self_cpu_time_total / 1e6 / args.steps
    step_s = totals["step"]
    rows = {
        "encoder-decoder forward": totals.get("encoder_decoder_forward", 0.0),
        "localization module": totals.get("localization", 0.0),
        "loss (Eq. 1)": totals.get("loss", 0.0),
        "other forward ops": totals["forward"] - sum(totals.get(k, 0.0) for k in PARTS[:3]),
        "backward (all parts)": totals.get("backward", 0.0),
        "optimizer (zero_grad + Adam)": totals.get("optimizer", 0.0),
    }
    print(f"config {args.config} {' '.join(args.overrides)}; batch {args.batch}, {size}x{size}, "
          f"K={model.num_slots}, threads {torch.get_num_threads()}, channels_last {args.channels_last}")
    print(f"unprofiled median step {seconds * 1e3:.1f} ms ({args.batch / seconds:.1f} img/s); "
          f"profiled step {step_s * 1e3:.1f} ms")
    print("| part | ms per step | share |\n|---|---:|---:|")
    for name, value in rows.items():
        print(f"| {name} | {value * 1e3:.1f} | {100 * value / step_s:.0f}% |")
    overhead = max(0.0, step_s - self_ops)
    print(f"| Python and dispatch overhead (wall minus operator self time) | {overhead * 1e3:.1f} | "
          f"{100 * overhead / step_s:.0f}% |")
    print("\ntop operators by self time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
