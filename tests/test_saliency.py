"""Saliency priors used as Flowers baselines: shapes, areas, and their ReDO IoU."""

import math

import pytest
import torch

from locseg import metrics
from locseg.models.saliency import centred_ellipse_mask, whole_image_mask


def test_whole_image_scores_the_foreground_fraction():
    gt = torch.zeros(3, 16, 20, dtype=torch.bool)
    gt[0, :8] = True
    gt[1, 2:4, 2:4] = True
    gt[2] = True
    fg = whole_image_mask(3, 16, 20)
    assert fg.shape == (3, 16, 20) and fg.dtype == torch.float32
    assert metrics.redo_iou(gt, fg).tolist() == pytest.approx([0.5, 4 / 320, 1.0])


@pytest.mark.parametrize("fraction", [0.5, 0.75, 1.0])
def test_ellipse_area_and_symmetry(fraction):
    m = centred_ellipse_mask(2, 200, 300, fraction)  # (B, H, W)
    assert m.shape == (2, 200, 300) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert m.mean().item() == pytest.approx(math.pi / 4 * fraction**2, abs=2e-3)
    assert torch.equal(m, m.flip(-1)) and torch.equal(m, m.flip(-2))
    assert torch.equal(m[0], m[1])


def test_ellipse_rejects_bad_fraction():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            centred_ellipse_mask(1, 4, 4, bad)
