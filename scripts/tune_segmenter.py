"""Short tuning runs of the paper's model on a validation split (never the test split).

Trains on 5,000 generated colored_on_grayscale images (generator seed 0) and scores 64 validation
images generated with seed 1 every 25 steps: FG-ARI, and where the mass of the masks goes on
foreground (object) and background pixels. Used to choose the values in docs/method.md, e.g.

    python scripts/tune_segmenter.py 10 model.segmenter.localization.sigma1=0.3

Each line: step, seconds, loss terms, FG-ARI, the fraction of object pixels labelled background,
and means over object (fg) / background (bg) pixels of Q_1, s_1, m_1, the object masks and the
object windows (1[G > 0.5]).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from locseg import config as config_lib
from locseg import metrics
from locseg.data import multi_dsprites
from locseg.inference import seeded_eval, to_tensor
from locseg.models import build_model
from locseg.train import train_step


def main() -> None:
    minutes, overrides = float(sys.argv[1]), sys.argv[2:]
    torch.manual_seed(0)
    train = multi_dsprites.generate_split("colored_on_grayscale", 5000, 0)["images"]
    val = multi_dsprites.generate_split("colored_on_grayscale", 64, 1)
    cfg = config_lib.load("configs/multi_dsprites.yaml", overrides)
    model = build_model(cfg.model, 64)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    fg = torch.from_numpy(val["labels"] > 0)
    x_val = to_tensor(val["images"], "cpu", 64)
    rng = np.random.default_rng(0)

    def diagnose() -> str:
        with torch.no_grad(), seeded_eval(model, 0):
            out = model(x_val)
        masks = out.masks[:, :, 0]
        labels = masks.argmax(1)
        q1, scopes, windows = out.extras["raw_background"], out.extras["scopes"], out.extras["windows"]
        stats = {
            "Q1_fg": q1[fg].mean(), "Q1_bg": q1[~fg].mean(), "s1_fg": scopes[:, 1][fg].mean(),
            "m1_fg": masks[:, 0][fg].mean(), "mobj_fg": masks[:, 1:].sum(1)[fg].mean(),
            "win_fg": (windows[:, 1:] > 0.5).float().amax(1)[fg].mean(),
        }
        fg_ari = metrics.ari(val["labels"], labels, ignore_index=0).nanmean().item()
        as_bg = (labels[fg] == 0).float().mean().item()
        return f"fg_ari={fg_ari:.3f} fg_as_bg={as_bg:.2f} " + " ".join(f"{k}={v:.3f}" for k, v in stats.items())

    print(overrides, flush=True)
    start, step = time.time(), 0
    while time.time() - start < minutes * 60:
        x = to_tensor(train[np.sort(rng.integers(0, len(train), cfg.train.batch_size))], "cpu", 64)
        out = train_step(model, x, opt, grad_clip=cfg.train.grad_clip)  # None: NaN/Inf loss, step skipped
        step += 1
        if out is None:
            print(f"{step} {time.time() - start:.0f}s skipped: loss is not finite", flush=True)
        elif step % 25 == 0:
            terms = " ".join(f"{k}={v.item():.1f}" for k, v in out.terms.items())
            print(f"{step} {time.time() - start:.0f}s {terms} {diagnose()}", flush=True)


if __name__ == "__main__":
    main()
