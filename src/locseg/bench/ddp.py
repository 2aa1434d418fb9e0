"""Data-parallel training: one process against two (gloo on the CPU), same global batch.

Each configuration runs in freshly spawned processes with one torch thread each: one process
trains on the whole batch, two processes each on half of it inside ``DistributedDataParallel``
(gradients all-reduced every step), as ``torchrun --nproc-per-node 2 -m locseg train`` does. The
figure of each is the median step time over its repeats (:mod:`.timing`); the two configurations
run one after the other, not interleaved (each needs its own processes), so on a busy machine
``speedup`` moves with the load. On a 2-core machine two processes can at best double the rate.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .timing import median_time

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, batch: int, size: int, slots: int, steps: int, out: str) -> None:
    from ..train import train_step
    from .models import _batch, _build

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model, opt = _build("ours", slots, size, torch.device("cpu"))
        net = DistributedDataParallel(model) if world > 1 else model
        x = _batch(batch // world, size, seed=rank)  # this rank's share of the global batch
        seconds = median_time(lambda: train_step(net, x, opt), steps)
        if rank == 0:
            Path(out).write_text(json.dumps({"step_s": seconds}))
    finally:
        if world > 1:
            dist.destroy_process_group()


def _measure(world: int, batch: int, size: int, slots: int, steps: int) -> float:
    with tempfile.TemporaryDirectory(prefix="locseg-bench-ddp-") as tmp:
        out = str(Path(tmp) / "result.json")
        mp.spawn(_worker, args=(world, _free_port(), batch, size, slots, steps, out), nprocs=world, join=True)
        return float(json.loads(Path(out).read_text())["step_s"])


def run(json_output: bool = False, quick: bool = False, batch: int = 32, size: int = 64, slots: int = 6,
        steps: int = 0) -> dict[str, float]:
    """Training images/s of the paper's model with 1 and with 2 processes at the same global batch.

    Returns:
        ``img_s_1proc``, ``img_s_2proc``, ``step_s_1proc``, ``step_s_2proc``, ``speedup`` (2 / 1)
        and ``efficiency`` (speedup / 2), with the sizes used.
    """
    del json_output  # the same numbers either way
    steps = steps or (2 if quick else 6)
    batch, size, slots = (4, 32, 3) if quick else (batch, size, slots)
    one = _measure(1, batch, size, slots, steps)
    two = _measure(2, batch, size, slots, steps)
    result = {"batch": float(batch), "image_size": float(size), "num_slots": float(slots), "threads_per_proc": 1.0,
              "step_s_1proc": one, "step_s_2proc": two, "img_s_1proc": batch / one, "img_s_2proc": batch / two,
              "speedup": one / two, "efficiency": one / two / 2}
    log.info("DDP: %.1f img/s on 1 process, %.1f on 2", result["img_s_1proc"], result["img_s_2proc"])
    return result
