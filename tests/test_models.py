"""Every model: output contract, forward/backward with a gradient on every parameter, no NaN."""

import dataclasses

import pytest
import torch

from locseg import config as config_lib
from locseg.models import MODELS, build_model, num_slots
from locseg.types import check_output

TINY = {
    "segmenter": ["model.segmenter.num_slots=3", "model.segmenter.latent_dim=4", "model.segmenter.channels=[4,8]"],
    "segmenter_skip": ["model.segmenter.arch=skip_ae", "model.segmenter.num_slots=3", "model.segmenter.gamma=0.0",
                       "model.segmenter.channels=[4,8]"],
    "segmenter_nomask": ["model.segmenter.mask_recon=false", "model.segmenter.num_slots=3",
                         "model.segmenter.channels=[4,8]", "model.segmenter.latent_dim=4"],
    "segmenter_detached": ["model.segmenter.mask_recon_grad=false", "model.segmenter.num_slots=3",
                           "model.segmenter.channels=[4,8]", "model.segmenter.latent_dim=4"],
    "segmenter_plus": ["model.segmenter.num_slots=3", "model.segmenter.latent_dim=4", "model.segmenter.channels=[4,8]",
                       "model.segmenter.decoder=light", "model.segmenter.bg_quality=relative",
                       "model.segmenter.background=flat", "model.segmenter.recon_target=masked",
                       "model.segmenter.sigma1_objects=0.5", "model.segmenter.localization.scope_weights=true",
                       "model.segmenter.localization.covariance=diag"],
    "monet": ["model.name=monet", "model.monet.num_slots=3", "model.monet.latent_dim=4",
              "model.monet.unet_blocks=3", "model.monet.unet_channels=4", "model.monet.vae_channels=4"],
}


def tiny_model(key: str):
    cfg = config_lib.load(overrides=TINY[key])
    torch.manual_seed(0)
    return build_model(cfg.model, 32), cfg


def test_registry_is_covered():
    assert set(MODELS) <= {k.split("_")[0] for k in TINY}


@pytest.mark.parametrize("key", sorted(TINY))
def test_contract_and_gradients(key, tiny_batch):
    model, cfg = tiny_model(key)
    model.train()
    out = model(tiny_batch)
    check_output(out, batch=2, slots=num_slots(cfg.model), height=32, width=32)
    assert abs(sum(v.item() for v in out.terms.values()) - out.loss.item()) < 1e-3 * max(1.0, abs(out.loss.item()))
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("key", ["segmenter", "segmenter_skip", "segmenter_plus"])
def test_segmenter_scope_never_grows_and_masks_partition(key, tiny_batch):
    model, _ = tiny_model(key)
    model.eval()
    with torch.no_grad():
        out = model(tiny_batch)
    scopes = out.extras["scopes"]  # (B, K, H, W) s_0 .. s_{K-1}
    assert torch.all(scopes[:, 1:] <= scopes[:, :-1] + 1e-6)
    assert torch.all((scopes >= 0) & (scopes <= 1))
    assert torch.allclose(scopes[:, 0], torch.ones_like(scopes[:, 0]))
    masks = out.masks[:, :, 0]
    assert torch.all(masks >= -1e-6)
    assert torch.allclose(masks.sum(1), torch.ones_like(masks[:, 0]), atol=1e-5)
    # section 2.5: the background mask is what step 1 explained plus what no step explained
    explained_by_objects = masks[:, 1:].sum(1)
    assert torch.allclose(masks[:, 0], 1 - explained_by_objects)


def test_localization_window_is_constant(tiny_batch):
    """L is not trained: the windows and the object masks' localization carry no gradient."""
    model, _ = tiny_model("segmenter")
    out = model(tiny_batch)
    assert not out.extras["windows"].requires_grad
    assert out.masks.requires_grad  # through Q, as the paper says


def test_eval_mode_is_deterministic_for_a_seed(tiny_batch):
    model, _ = tiny_model("segmenter")
    model.eval()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        with torch.no_grad():
            outs.append(model(tiny_batch).masks)
    assert torch.equal(outs[0], outs[1])


def test_eq1_loss_matches_hand_computation():
    """One image, one pixel, one channel (broadcast to 3), K = 2: Eq. 1 written out by hand."""
    from locseg.models.segmenter import eq1_loss

    cfg = config_lib.load(overrides=["model.segmenter.beta=0.5", "model.segmenter.zeta=0.1",
                                     "model.segmenter.gamma=0.01"]).model.segmenter
    x = torch.full((1, 3, 1, 1), 0.8)
    recons = torch.tensor([0.4, 0.9]).view(1, 2, 1, 1, 1).expand(1, 2, 3, 1, 1)
    masks = torch.tensor([0.25, 0.75]).view(1, 2, 1, 1, 1)
    kl = torch.tensor([[2.0, 3.0]])
    for mask_recon in (True, False):
        c = dataclasses.replace(cfg, mask_recon=mask_recon)
        loss, terms = eq1_loss(x, recons, masks, kl, c)
        expected = 0.0
        for m, r in ((0.25, 0.4), (0.75, 0.9)):
            t = m * r if mask_recon else r
            expected += 3 * (m * (t - 0.8) ** 2 + 0.5 * (1 - m) * (t - 0.1) ** 2)
        expected += 0.01 * 5.0
        assert loss.item() == pytest.approx(expected, rel=1e-6)
        assert sum(v.item() for v in terms.values()) == pytest.approx(expected, rel=1e-6)
