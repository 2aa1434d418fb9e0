"""Non-trainable baselines: the output contract, exact answers on scenes whose answer is known."""

import numpy as np
import pytest
import torch

from locseg import metrics
from locseg.config import LocalizationConfig
from locseg.diagnostics import output_diagnostics
from locseg.models.baselines import BASELINES, build_baseline, modal_colour_mask
from locseg.types import check_output


def two_squares(bg=(0.5, 0.5, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, 32, 32) flat background with a red and a blue square far apart, and its labels."""
    x = torch.tensor(bg).view(1, 3, 1, 1).repeat(1, 1, 32, 32)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    x[0, :, 4:10, 4:10] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    labels[0, 4:10, 4:10] = 1
    x[0, :, 20:27, 18:26] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)
    labels[0, 20:27, 18:26] = 2
    return x, labels


ONE_SCENE_RULE = ("whole-image", "centre-ellipse", "one-segment", "connected-components-nonblack")


@pytest.mark.parametrize("name", [b for b in BASELINES if b not in ONE_SCENE_RULE])
def test_contract_and_separated_objects(name):
    x, labels = two_squares()
    model = build_baseline(name, 4, LocalizationConfig(gmm_init="window", butterworth_f=6.0, box_size=5))
    out = model(x)
    check_output(out, batch=1, slots=4, height=32, width=32)
    pred = out.masks[:, :, 0].argmax(1)  # (1, H, W)
    assert metrics.ari(labels, pred, ignore_index=0).item() == pytest.approx(1.0)
    if name != "kmeans-rgbxy":  # position features may split the background; the objects stay whole
        assert (pred[labels == 0] == 0).all(), "slot 0 is the background"
    centres = out.locations[0, 1:3].sort(dim=0).values  # the two object slots, by y
    if name in ("kmeans-rgb", "connected-components", "oracle"):
        expected = torch.tensor([[7 / 32, 7 / 32], [23.5 / 32, 22 / 32]])
        assert torch.allclose(centres, expected, atol=1e-4)


def test_modal_colour_mask():
    x, labels = two_squares()
    assert torch.equal(modal_colour_mask(x), labels == 0)


def test_connected_components_merges_touching_same_image():
    x, labels = two_squares()
    x[0, :, 9:21, 8:20] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)  # a bridge joins both squares
    out = build_baseline("connected-components", 4)(x)
    pred = out.masks[:, :, 0].argmax(1)
    assert len(pred[0][~modal_colour_mask(x)[0]].unique()) == 1  # one component


def test_unknown_baseline():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("nope", 4)


def test_diagnostics_on_perfect_and_collapsed_masks():
    x, labels = two_squares()
    out = build_baseline("oracle", 4, LocalizationConfig(gmm_init="window", butterworth_f=6.0, box_size=5))(x)
    good = output_diagnostics(x, out, labels)
    assert good["fg_as_bg"] == 0.0 and good["slot_collapse"] == 0.0
    assert good["q1_fg"] == 0.0 and good["q1_bg"] == 1.0 and good["window_cover_fg"] == 1.0
    assert good["windows_on_bg"] == 0.0 and good["colour_error"] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(good["fg_ari_dark"]) and good["fg_ari_mid"] == pytest.approx(1.0)
    out.masks = torch.zeros_like(out.masks)
    out.masks[:, 0] = 1.0  # everything to the background
    bad = output_diagnostics(x, out, labels)
    assert bad["fg_as_bg"] == 1.0 and bad["slot_collapse"] == 1.0 and bad["obj_mass_fg"] == 0.0


@pytest.mark.parametrize("name", ["whole-image", "centre-ellipse"])
def test_saliency_priors_two_slots(name):
    x, _ = two_squares()
    out = build_baseline(name, 6)(x)
    check_output(out, batch=1, slots=2, height=32, width=32)
    fg = out.masks[0, 1, 0]
    if name == "whole-image":
        assert fg.min() == 1.0
    else:
        assert fg[16, 16] == 1.0 and fg[0, 0] == 0.0


def test_one_segment_puts_every_pixel_in_slot_zero():
    x, labels = two_squares()
    out = build_baseline("one-segment", 10)(x)
    check_output(out, batch=1, slots=10, height=32, width=32)
    pred = out.masks[:, :, 0].argmax(1)  # (1, H, W)
    assert (pred == 0).all()
    assert metrics.ami(labels, pred, ignore_index=0).item() == pytest.approx(0.0)


def test_connected_components_nonblack_on_a_montezuma_like_frame():
    """Black background, a coloured wall across the frame and two separate objects: non-black rule."""
    x = torch.zeros(1, 3, 42, 32)
    labels = torch.zeros(1, 42, 32, dtype=torch.long)
    x[0, :, 30:33, :] = torch.tensor([66, 158, 130]).view(3, 1, 1) / 255  # the wall: largest component
    labels[0, 30:33, :] = 3
    x[0, :, 4:10, 4:8] = torch.tensor([200, 72, 72]).view(3, 1, 1) / 255  # agent-coloured block
    labels[0, 4:10, 4:8] = 1
    x[0, :, 12:20, 20:22] = torch.tensor([232, 204, 99]).view(3, 1, 1) / 255  # a yellow door
    labels[0, 12:20, 20:22] = 2
    out = build_baseline("connected-components-nonblack", 4)(x)
    check_output(out, batch=1, slots=4, height=42, width=32)
    pred = out.masks[:, :, 0].argmax(1)  # (1, H, W)
    assert (pred[labels == 0] == 0).all(), "black is the background"
    assert metrics.ami(labels, pred, ignore_index=0).item() == pytest.approx(1.0)
    assert pred[0, 31, 0] == 1, "components by decreasing size: the wall first"
    # once the wall covers most of the frame the modal rule calls it background; the black rule does not
    x[0, :, 20:42, :] = torch.tensor([66, 158, 130]).view(3, 1, 1) / 255
    assert modal_colour_mask(x)[0, 30, 0] and not modal_colour_mask(x)[0, 0, 0]
    pred = build_baseline("connected-components-nonblack", 4)(x).masks[:, :, 0].argmax(1)  # (1, H, W)
    assert pred[0, 0, 0] == 0 and pred[0, 30, 0] == 1
