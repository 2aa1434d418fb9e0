"""The one timing helper every benchmark uses: interleaved repeats, median.

Two things compared in one run are timed in rounds: each round calls every candidate once, in an
order that rotates from round to round, so a burst of other work on a shared machine slows every
candidate alike instead of whichever happened to be running; each candidate's figure is the median
over rounds, which ignores the rounds such a burst hit hardest.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _sync(device: str | torch.device | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: str | torch.device | None = None) -> dict[str, float]:
    """Median wall-clock seconds of each candidate, timed in interleaved rounds.

    Args:
        candidates: name -> a call that does the work once.
        repeats: timed rounds (at least 1); each round calls every candidate once.
        warmup: untimed rounds first (allocator, caches, lazy initialisation).
        device: a CUDA device to synchronise before and after each call (None or CPU: no sync).

    Returns:
        name -> median seconds of one call.

    >>> times = interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, repeats=3)
    >>> sorted(times) == ["a", "b"] and all(t > 0 for t in times.values())
    True
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            _sync(device)
            start = time.perf_counter()
            candidates[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1,
                device: str | torch.device | None = None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls (one candidate)."""
    return interleaved({"fn": fn}, repeats, warmup, device)["fn"]
