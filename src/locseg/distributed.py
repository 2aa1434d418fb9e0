"""Data-parallel training across processes with PyTorch's own engine (``torch.distributed``).

``torchrun --nproc-per-node N -m locseg train ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each; :func:`process_group`
reads them, joins the group (backend ``gloo`` on the CPU, ``nccl`` on CUDA) and leaves it on exit,
error or Ctrl-C. The trainer wraps the model in ``DistributedDataParallel`` (gradients averaged over
the ranks) and gives each rank its own slice of the step's global batch (:func:`rank_slice`), so N
ranks with ``train.batch_size = B`` compute what one process computes on the batch of B: the loss
is a mean over images and DDP averages the per-rank gradients. Only rank 0 logs, evaluates and
writes checkpoints and figures; the checkpoint holds every rank's RNG state.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on the process that logs, evaluates and writes (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group as a :class:`World` (one process when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def launched() -> bool:
    """True when this process was started by torchrun (or by hand) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the process group that torchrun's environment describes, for the duration of the block.

    Nothing happens in a single process, or when a group is already initialised (the caller owns
    it). On CUDA each process uses ``cuda:LOCAL_RANK``. The group is destroyed when the block ends,
    whether normally, by an exception or by Ctrl-C, so no process is left waiting for the others.

    Args:
        device: the device asked for; picks the backend (``nccl`` for CUDA, ``gloo`` for the CPU).

    Yields:
        this process's :class:`World`.
    """
    if not launched() or dist.is_initialized():
        yield world()
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend_for(device))
    try:
        here = world()
        log.info("rank %d of %d joined (%s)", here.rank, here.size, backend_for(device))
        yield here
        dist.barrier()  # no rank tears down while another still has work in flight
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, here: World) -> torch.device:
    """``cuda`` without an index means this rank's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    if device.type == "cuda" and device.index is None and here.distributed:
        return torch.device("cuda", here.local_rank)
    return device


def rank_slice(indices: np.ndarray, here: World) -> np.ndarray:
    """This rank's disjoint, contiguous share of a step's global batch ``indices`` (B,) -> (B / N,).

    Raises:
        ValueError: when the global batch does not split evenly over the ranks (the equal shares
            are what makes N ranks compute the same update as one process).
    """
    if len(indices) % here.size:
        raise ValueError(f"train.batch_size={len(indices)} does not split evenly over {here.size} processes: "
                         f"use a multiple of {here.size}")
    share = len(indices) // here.size
    return indices[here.rank * share:(here.rank + 1) * share]


def any_rank(flags: list[bool], here: World) -> list[bool]:
    """Each flag, true on every rank when it is true on at least one (a collective: every rank calls it)."""
    if not here.distributed:
        return flags
    t = torch.tensor([float(f) for f in flags], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean_over_ranks(values: dict[str, float], here: World) -> dict[str, float]:
    """Each value averaged over the ranks (a collective; every rank passes the same keys)."""
    if not here.distributed or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(values, (t / here.size).tolist(), strict=True))


def broadcast(obj: Any, here: World) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; tensors in it should be on the CPU)."""
    if not here.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, here: World) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere)."""
    if not here.distributed:
        return [obj]
    box = [None] * here.size if here.main else None
    dist.gather_object(obj, box, dst=0)
    return box


def barrier(here: World) -> None:
    if here.distributed:
        dist.barrier()


def _comm_device() -> torch.device:
    """Small tensors for collectives live where the backend wants them (the GPU for nccl)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_finite(value: torch.Tensor, sync: bool) -> bool:
    """True when ``value`` is finite here and, with ``sync``, on every rank (then a collective)."""
    ok = torch.isfinite(value).all().to(torch.float32).reshape(1)
    if sync and dist.is_available() and dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())
