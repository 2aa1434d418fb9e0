"""Found object locations drawn on Montezuma frames: results/montezuma/locations.png.

Usage: .venv/bin/python scripts/montezuma_locations_figure.py CHECKPOINT DATA [OUT]
For three test frames: the frame (3x), each true object centre as a white ring with its number
(1 = agent ... 9 = rope, docs/montezuma.md) and the object slot matched to it (Hungarian, as
``locseg evaluate``) as a cross in the colour of its label map, joined to the ring by a line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from locseg.checkpoint import load_model
from locseg.data import load_split
from locseg.metrics import matched_locations
from locseg.segment import segment_images

SCALE = 3
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190)]


def main(checkpoint: str, data: str, out: str = "results/montezuma/locations.png") -> None:
    model, cfg, _ = load_model(checkpoint, "cpu")
    split = load_split(data, "test")
    rows = [0, 100, 200]
    images = [np.asarray(split["images"][i]) for i in rows]
    results = list(segment_images(model, images, cfg.data.image_size, "cpu", seed=cfg.train.seed))
    panels = []
    for i, image, result in zip(rows, images, results, strict=True):
        true, visible = split["centres"][i][None], split["visibility"][i][None]  # (1, 9, 2), (1, 9)
        found = matched_locations(true, visible, result["locations"][None, 1:])[0]  # (9, 2)
        H, W = image.shape[:2]
        panel = Image.fromarray(image).resize((W * SCALE, H * SCALE), Image.NEAREST)
        draw = ImageDraw.Draw(panel)
        for j in np.flatnonzero(visible[0]):
            ty, tx = true[0, j] * (H * SCALE, W * SCALE)
            fy, fx = found[j] * (H * SCALE, W * SCALE)
            colour = COLOURS[j]
            draw.line([(tx, ty), (fx, fy)], fill=colour, width=2)
            draw.ellipse([tx - 7, ty - 7, tx + 7, ty + 7], outline=(255, 255, 255), width=2)
            draw.line([(fx - 7, fy), (fx + 7, fy)], fill=colour, width=3)
            draw.line([(fx, fy - 7), (fx, fy + 7)], fill=colour, width=3)
            draw.text((tx + 9, ty - 6), str(j + 1), fill=(255, 255, 255))
        panels.append(panel)
    figure = Image.new("RGB", (sum(p.width for p in panels) + 10 * (len(panels) - 1), panels[0].height))
    x = 0
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width + 10
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
