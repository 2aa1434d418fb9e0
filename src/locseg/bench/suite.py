"""The benchmark suite: every benchmark by name, run one after another into one result.

Each benchmark is a module of :mod:`locseg.bench` with ``run(quick=...) -> dict`` of numbers,
measured against a reference in the same run: ``localization`` (scikit-learn's GaussianMixture),
``models`` (MONet, the old decoder path, one large convolution), ``metrics`` (scikit-learn),
``data`` (the training step it feeds), ``ddp`` (one process against two). All time with
:mod:`locseg.bench.timing`.
"""

from __future__ import annotations

import importlib
import inspect
import logging

log = logging.getLogger(__name__)

BENCHMARKS = ("localization", "models", "metrics", "data", "ddp")


def run(names: list[str] | tuple[str, ...] = BENCHMARKS, quick: bool = False,
        device: str = "cpu") -> dict[str, dict[str, float]]:
    """Run the named benchmarks (all by default); returns one section per benchmark.

    Args:
        names: benchmarks of :data:`BENCHMARKS`, in the order to run them.
        quick: small sizes and few repeats (a smoke test).
        device: passed to the benchmarks that take a device (``models``, ``data``).
    """
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    results = {}
    for name in names:
        module = importlib.import_module(f"locseg.bench.{name}")
        kwargs = {"device": device} if "device" in inspect.signature(module.run).parameters else {}
        log.info("bench %s", name)
        results[name] = module.run(quick=quick, **kwargs)
    return results
