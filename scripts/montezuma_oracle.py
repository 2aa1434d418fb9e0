"""The localization module's ceiling on Montezuma frames: perfect background and reconstructions.

    python scripts/montezuma_oracle.py [--data data/montezuma] [--split train] [--num-images 96]

Training-free, on training frames (tuning data, never the scored frames). For each input size, box
size and Butterworth f: frames resized as the model sees them (``inference.to_tensor``), the scope
set to the true objects' share of each pixel (a perfect background step: walls, floors and the
score bar are explained), then K - 1 steps of ``localize`` with Q = 1 (perfect reconstructions),
masks upsampled to 210 x 160 as ``locseg evaluate`` does, and AMI over object pixels against the
native labels. Prints one markdown row per setting, with each object's share of frames where its
pixels fall mostly into a slot of their own (majority slot with at least half of that slot's
object pixels). Results are quoted in results/montezuma.md.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from locseg.config import load as load_config
from locseg.data import load_split
from locseg.inference import to_tensor
from locseg.localization import localize
from locseg.metrics import masks_to_labels
from locseg.metrics.mutual_info import ami


def oracle_labels(x: torch.Tensor, objects: torch.Tensor, cfg, num_slots: int, out_size: tuple[int, int]
                  ) -> torch.Tensor:
    """x (B, 3, s, s), objects (B, s, s) share of object pixels -> labels (B, H, W) at ``out_size``."""
    scope = objects.clone()  # (B, s, s) a perfect background step leaves exactly the objects
    masks = [1.0 - objects]
    for _ in range(num_slots - 1):
        found = localize(x, x, scope, cfg, quality=torch.ones_like(scope))
        masks.append(scope * found.L)
        scope = scope * (1.0 - found.L)
    masks[0] = masks[0] + scope  # what no step took goes to the background slot, as section 2.5
    m = F.interpolate(torch.stack(masks, 1), size=out_size, mode="bilinear", align_corners=False)  # (B, K, H, W)
    return masks_to_labels(m)  # (B, H, W)


def own_slot(true: np.ndarray, pred: np.ndarray, obj: int) -> float | None:
    """1 if object ``obj``'s majority slot holds mostly that object among object pixels, else 0."""
    on = true == obj
    if not on.any():
        return None
    slot = np.bincount(pred[on]).argmax()
    in_slot = (pred == slot) & (true > 0)
    return float((true[in_slot] == obj).mean() >= 0.5)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/montezuma")
    p.add_argument("--split", default="train")
    p.add_argument("--num-images", type=int, default=96)
    p.add_argument("--config", default="configs/montezuma.yaml")
    p.add_argument("--sizes", default="96,128", help="square sides the frames are resized to, or 'native' (210 x 160)")
    p.add_argument("--slots", default="", help="K values to try (default: the config's)")
    p.add_argument("--boxes", default="5,9")
    p.add_argument("--fs", default="7,10,14")
    p.add_argument("--connected", default="false,true", help="values of localization.connected to try")
    p.add_argument("--scope-weights", default="false", help="values of localization.scope_weights to try")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    base, K = cfg.model.segmenter.localization, cfg.model.segmenter.num_slots
    split = load_split(args.data, args.split)
    names = split["meta"]["objects"]
    true = np.asarray(split["labels"][: args.num_images]).astype(np.int64)  # (B, H, W)
    H, W = true.shape[1:]
    slot_counts = [int(k) for k in args.slots.split(",")] if args.slots else [K]
    flags = {"connected": [v == "true" for v in args.connected.split(",")],
             "scope_weights": [v == "true" for v in args.scope_weights.split(",")]}
    print("| size | K | box | f | connected | scope weights | AMI (objects) | " + " | ".join(names) + " |")
    print("|---" * (7 + len(names)) + "|")
    for size in args.sizes.split(","):
        if size == "native":
            x = torch.from_numpy(np.array(split["images"][: args.num_images])).permute(0, 3, 1, 2).float() / 255
            objects = torch.from_numpy(true > 0).float()  # (B, H, W)
        else:
            x = to_tensor(split["images"][: args.num_images], "cpu", int(size))  # (B, 3, s, s)
            objects = F.interpolate(torch.from_numpy(true > 0).float()[:, None], size=(int(size),) * 2,
                                    mode="area")[:, 0]  # (B, s, s) each pixel's share of object pixels
        for k, box, f, connected, scope_weights in itertools.product(
                slot_counts, [int(b) for b in args.boxes.split(",")], [float(v) for v in args.fs.split(",")],
                flags["connected"], flags["scope_weights"]):
            loc = replace(base, box_size=box, butterworth_f=f, connected=connected, scope_weights=scope_weights)
            pred = oracle_labels(x, objects, loc, k, (H, W)).numpy()
            score = float(np.nanmean(ami(true, pred, ignore_index=0).numpy()))
            shares = []
            for o in range(1, len(names) + 1):
                hits = [h for h in (own_slot(t, q, o) for t, q in zip(true, pred, strict=True)) if h is not None]
                shares.append(f"{np.mean(hits):.2f}" if hits else "–")
            print(f"| {size} | {k} | {box} | {f:g} | {connected} | {scope_weights} | {score:.3f} | "
                  + " | ".join(shares) + " |", flush=True)


if __name__ == "__main__":
    main()
