"""Can shape or connectivity separate one-colour sprites? Training-free checks on binarized validation data.

    python scripts/binarized_split_study.py [--data data/tune_binarized] [--num-images 320]

On the validation split (seed-1 data, never a test split) of binarized Multi-dSprites, prints FG-ARI of
- connected components of the non-black pixels (the `connected-components` baseline);
- a distance-transform watershed (markers: maxima of the Euclidean distance transform at least
  ``min_dist`` pixels apart), the classical way to split touching blobs;
- the module's oracle (perfect background and reconstructions) with the binarized config, without and
  with ``localization.connected``, with the window centred on the deepest unexplained pixel
  (chessboard depth by repeated erosion) instead of the box-filter argmax, and with
  ``localization.blob_split`` (a position-only 2-GMM split of blobs that reach beyond L);
and the oracle and connected components separately on images whose sprites are all separate and on
images where some touch. Results are quoted in results/tuning_v2.md (round 3).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from locseg.config import load as load_config
from locseg.data import load_split
from locseg.localization import cut
from locseg.localization.butterworth import butterworth_1d
from locseg.localization.connected import keep_connected
from locseg.metrics.rand_index import ari
from locseg.models.baselines import ConnectedComponents, Oracle, modal_colour_mask


def fg_ari(labels: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    return ari(labels, pred, ignore_index=0).numpy()  # (B,)


def watershed(fg: np.ndarray, min_dist: int) -> np.ndarray:
    """Distance-transform watershed of one boolean mask (H, W) -> labels (0 = background)."""
    dist = ndimage.distance_transform_edt(fg)
    peaks = (dist == ndimage.maximum_filter(dist, size=2 * min_dist + 1)) & fg
    markers, count = ndimage.label(peaks, structure=np.ones((3, 3)))
    if count == 0:
        return ndimage.label(fg, structure=np.ones((3, 3)))[0]
    relief = (dist.max() - dist) / max(dist.max(), 1e-9) * 254  # low inside, high at the edges
    markers = markers.astype(np.int32)
    markers[~fg] = count + 1  # one marker for the background
    out = ndimage.watershed_ift(relief.astype(np.uint8), markers)
    out[~fg] = 0
    return out


def depth_centred_oracle(x: torch.Tensor, cfg, num_slots: int) -> torch.Tensor:
    """The oracle with the window centred on the deepest unexplained pixel, f = depth + 5."""
    B, _, H, W = x.shape
    background = modal_colour_mask(x).to(x.dtype)  # (B, H, W)
    scope, masks = 1.0 - background, [background]
    for _ in range(num_slots - 1):
        region = (scope > 0.5).float().unsqueeze(1)  # (B, 1, H, W)
        depth = torch.zeros_like(region)
        while bool(region.any()):
            depth += region
            region = -F.max_pool2d(-region, 3, stride=1, padding=1)  # one erosion
        flat = depth.flatten(1).argmax(1)  # (B,)
        centre = torch.stack([flat // W, flat % W], 1)  # (B, 2)
        f = depth.flatten(1).max(1).values + 5.0  # (B,)
        n = cfg.butterworth_n  # G(r) = 1 / sqrt(1 + (r / f)^(2n)) with a per-image f
        g_r = butterworth_1d((torch.arange(H).view(1, H) - centre[:, :1]) / f.view(B, 1), 1.0, n)  # (B, H)
        g_c = butterworth_1d((torch.arange(W).view(1, W) - centre[:, 1:]) / f.view(B, 1), 1.0, n)  # (B, W)
        window = g_r.unsqueeze(2) * g_c.unsqueeze(1)  # (B, H, W)
        L, _, _ = cut(x, centre, window, scope, cfg)
        L = keep_connected(L, scope, centre, cfg.threshold)
        masks.append(scope * L)
        scope = scope * (1.0 - L)
    masks[-1] = masks[-1] + scope
    return torch.stack(masks, 1).argmax(1)  # (B, H, W)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/tune_binarized")
    p.add_argument("--num-images", type=int, default=320)
    p.add_argument("--config", default="configs/multi_dsprites_binarized.yaml")
    args = p.parse_args()
    torch.set_num_threads(1)
    split = load_split(args.data, "test")
    n = min(args.num_images, len(split["images"]))
    x = torch.from_numpy(np.array(split["images"][:n])).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
    labels = torch.from_numpy(np.array(split["labels"][:n])).long()  # (B, H, W)
    cfg = replace(load_config(args.config).model.segmenter.localization, connected=False, blob_split=0)
    K = load_config(args.config).model.segmenter.num_slots

    objects = np.array([len(np.unique(lab)) - 1 for lab in labels.numpy()])
    blobs = np.array([ndimage.label(lab > 0, structure=np.ones((3, 3)))[1] for lab in labels.numpy()])
    separate = blobs == objects
    print(f"{n} images: all sprites separate in {separate.mean():.1%}, some touch in {(~separate).mean():.1%}")

    scores = {"connected components": fg_ari(labels, ConnectedComponents(K)(x).masks[:, :, 0].argmax(1))}
    fg = (x.amax(1) > 0.5).numpy()  # (B, H, W) the white pixels
    for d in (2, 4, 6):
        pred = torch.from_numpy(np.stack([watershed(m, d) for m in fg]).astype(np.int64))
        scores[f"watershed, min_dist {d}"] = fg_ari(labels, pred)
    scores["oracle (box argmax)"] = fg_ari(labels, Oracle(K, cfg)(x).masks[:, :, 0].argmax(1))
    scores["oracle + connected"] = fg_ari(labels, Oracle(K, replace(cfg, connected=True))(x).masks[:, :, 0].argmax(1))
    scores["oracle, depth-centred window + connected"] = fg_ari(labels, depth_centred_oracle(x, cfg, K))
    for iters in (10, 20, 50):
        oracle = Oracle(K, replace(cfg, connected=True, blob_split=iters))
        scores[f"oracle + connected + blob_split {iters}"] = fg_ari(labels, oracle(x).masks[:, :, 0].argmax(1))
    print("| method | all | sprites separate | some touch |")
    print("|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {np.nanmean(s):.3f} | {np.nanmean(s[separate]):.3f} | {np.nanmean(s[~separate]):.3f} |")


if __name__ == "__main__":
    main()
