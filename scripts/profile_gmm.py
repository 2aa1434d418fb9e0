"""Where the batched GMM's time goes: fit_gmm on localize's own problem (64 synthetic 64x64 images, the
default LocalizationConfig, the paper's start), one thread, torch.profiler.

    OMP_NUM_THREADS=1 python scripts/profile_gmm.py
"""

import time

import torch
from torch.profiler import profile

from locseg.bench.localization import _fit_ours, _gmm_problem, synthetic_batch
from locseg.config import LocalizationConfig

torch.set_num_threads(1)
cfg = LocalizationConfig()
x, x_re, scope, _ = synthetic_batch(64, 64, 64, seed=1)
pixels, means, covariances = _gmm_problem(x, x_re, scope, cfg)
selected = float((pixels.weights > 0).sum(1).float().mean())
print("window pixels per image", pixels.features.shape[1], "selected", selected)
for _ in range(5):
    _fit_ours(pixels, means, covariances, cfg)
start = time.perf_counter()
for _ in range(50):
    _fit_ours(pixels, means, covariances, cfg)
print(f"{(time.perf_counter() - start) / 50 * 1000:.2f} ms per fit of 64 images")
with profile() as prof:
    for _ in range(20):
        _fit_ours(pixels, means, covariances, cfg)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
