"""Tests for the MONet baseline (``locseg.models.monet``)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from locseg.config import MonetConfig
from locseg.models.monet import ComponentVAE, Monet, kl_masks, kl_normal, mixture_nll, scope_step
from locseg.types import check_output

SIZE = 32
TINY = MonetConfig(
    num_slots=3,
    latent_dim=4,
    unet_blocks=3,
    unet_channels=8,
    unet_hidden=16,
    vae_channels=8,
    vae_hidden=32,
)


def tiny_model(seed: int = 0, **overrides) -> Monet:
    torch.manual_seed(seed)
    return Monet(dataclasses.replace(TINY, **overrides), image_size=SIZE)


def images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, SIZE, SIZE, generator=g)  # (B, 3, H, W)


def assert_finite_grads(model: Monet) -> None:
    nonzero = 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a NaN/Inf gradient"
        nonzero += int(p.grad.abs().sum() > 0)
    assert nonzero > 0, "every gradient is zero"


# --------------------------------------------------------------------------- model


def test_forward_backward_every_parameter_gets_a_gradient():
    model = tiny_model()
    out = model(images())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert_finite_grads(model)
    # every parameter tensor matters here (no dead branches): each gradient is non-zero somewhere
    dead = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not dead, f"parameters with an all-zero gradient: {dead}"


def test_output_contract_and_terms():
    model = tiny_model()
    x = images()
    out = model(x)
    check_output(out, batch=2, slots=3, height=SIZE, width=SIZE)
    masks = out.masks[:, :, 0]  # (B, K, H, W)
    torch.testing.assert_close(masks.sum(1), torch.ones(2, SIZE, SIZE), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.recon, (out.masks * out.slot_recons).sum(1))
    assert out.slot_recons.min() >= 0 and out.slot_recons.max() <= 1
    assert set(out.terms) == {"nll", "kl_z", "kl_mask"}
    assert all(t.dim() == 0 and not t.requires_grad for t in out.terms.values())
    torch.testing.assert_close(sum(out.terms.values()), out.loss.detach(), rtol=1e-5, atol=1e-3)
    assert out.terms["kl_z"] >= 0 and out.terms["kl_mask"] >= -1e-3
    assert out.extras["decoded_masks"].shape == (2, 3, SIZE, SIZE)
    assert out.extras["scopes"].shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(out.extras["decoded_masks"].sum(1), torch.ones(2, SIZE, SIZE))


def test_terms_follow_the_weights():
    x = images()
    outs = {}
    for beta, gamma in [(0.5, 0.5), (1.0, 2.0)]:
        model = tiny_model(beta=beta, gamma=gamma).eval()  # eval: z = mean, so runs are comparable
        outs[beta, gamma] = model(x).terms
    a, b = outs[0.5, 0.5], outs[1.0, 2.0]
    torch.testing.assert_close(b["nll"], a["nll"])
    torch.testing.assert_close(b["kl_z"], 2 * a["kl_z"])
    torch.testing.assert_close(b["kl_mask"], 4 * a["kl_mask"])


def test_log_scope_recursion_in_the_model():
    model = tiny_model(num_slots=4)
    out = model(images())
    masks, scopes = out.masks[:, :, 0], out.extras["scopes"]  # (B, K, H, W) each
    ones = torch.ones_like(scopes[:, 0])
    torch.testing.assert_close(scopes[:, 0], ones)  # s_0 = 1
    for k in range(3):  # s_k = s_{k-1} - m_k: the scope only shrinks
        torch.testing.assert_close(scopes[:, k + 1], scopes[:, k] - masks[:, k], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(masks[:, -1], scopes[:, -1])  # the last slot takes the remaining scope
    assert (scopes[:, 1:] <= scopes[:, :-1] + 1e-7).all()
    torch.testing.assert_close(masks.sum(1), ones, atol=1e-6, rtol=0)


def test_scope_step_matches_the_product_formula():
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(5, 2, 1, 6, 6, generator=g, dtype=torch.float64)  # (K-1, B, 1, H, W)
    alpha = torch.sigmoid(logits)
    log_s = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    for k in range(5):
        log_m, log_s = scope_step(log_s, logits[k])
        expected = alpha[k] * torch.prod(1 - alpha[:k], dim=0)  # m_k = alpha_k prod_{j<k} (1 - alpha_j)
        torch.testing.assert_close(log_m.exp(), expected)
    torch.testing.assert_close(log_s.exp(), torch.prod(1 - alpha, dim=0))


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_extreme_images_give_a_finite_loss(value):
    model = tiny_model()
    out = model(torch.full((2, 3, SIZE, SIZE), value))
    check_output(out, batch=2, slots=3, height=SIZE, width=SIZE)
    out.loss.backward()
    assert_finite_grads(model)


@pytest.mark.parametrize("bias", [1e3, -1e3])
def test_underflowing_masks_stay_finite(bias):
    model = tiny_model()
    with torch.no_grad():
        model.attention.head.bias.fill_(bias)  # alpha = 1 (slot 0 takes all) or 0 (the last slot does)
    out = model(images())
    masks = out.masks[:, :, 0]
    assert (masks == 0).any(), "the test should drive some masks to exactly zero"
    check_output(out, batch=2, slots=3, height=SIZE, width=SIZE)
    assert all(torch.isfinite(t) for t in out.terms.values())
    out.loss.backward()
    assert_finite_grads(model)


def test_deterministic_for_a_fixed_seed():
    x = images()
    runs = []
    for _ in range(2):
        model = tiny_model(seed=3)
        torch.manual_seed(7)
        out = model(x)
        out.loss.backward()
        runs.append((out, [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = runs
    assert torch.equal(a.loss, b.loss)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.masks, b.masks)
    assert all(torch.equal(u, v) for u, v in zip(ga, gb, strict=True))


def test_eval_mode_uses_the_posterior_mean():
    model = tiny_model().eval()
    x = images()
    torch.manual_seed(0)
    a = model(x).loss
    torch.manual_seed(1)
    b = model(x).loss
    assert torch.equal(a, b)


def test_default_config_builds_for_64x64():
    torch.manual_seed(0)
    model = Monet(MonetConfig(), image_size=64).eval()
    assert model.attention.bottleneck_shape == (32, 4, 4)  # 5 levels: 64 -> 4
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    check_output(out, batch=1, slots=6, height=64, width=64)
    torch.testing.assert_close(model.sigmas, torch.tensor([0.09, 0.11, 0.11, 0.11, 0.11, 0.11]))


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="expects images of shape"):
        model(torch.rand(2, 3, SIZE + 1, SIZE))
    with pytest.raises(ValueError, match="expects images of shape"):
        model(torch.rand(2, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="too small"):
        Monet(dataclasses.replace(TINY, unet_blocks=6), image_size=SIZE)  # 32 -> 1x1 bottleneck


# --------------------------------------------------------------------------- parts vs references


def test_broadcast_decoder_equals_tiling_then_convolving():
    torch.manual_seed(0)
    vae = ComponentVAE(image_size=12, latent_dim=5, channels=6, hidden=16).double()
    z = torch.randn(7, 5, dtype=torch.float64)
    side = 12 + 8
    lin = torch.linspace(-1, 1, side, dtype=torch.float64)
    ys, xs = torch.meshgrid(lin, lin, indexing="ij")
    tiled = torch.cat([z[:, :, None, None].expand(7, 5, side, side), torch.stack([xs, ys]).expand(7, 2, side, side)], 1)
    expected = vae.decoder_conv(vae.decoder_in(tiled))  # the textbook spatial broadcast decoder
    got = vae.decode(z)
    assert got.shape == (7, 4, 12, 12)
    torch.testing.assert_close(got, expected)


def test_mixture_nll_matches_a_direct_reference():
    g = torch.Generator().manual_seed(0)
    B, K, H, W = 2, 3, 4, 5
    x = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)
    means = torch.rand(B, K, 3, H, W, generator=g, dtype=torch.float64)
    masks = torch.softmax(torch.randn(B, K, H, W, generator=g, dtype=torch.float64), dim=1)
    sigmas = torch.tensor([0.09, 0.11, 0.11], dtype=torch.float64)
    # p(x_i) = sum_k m_ki prod_c N(x_ci; mu_kci, sigma_k), in probability space
    dens = Normal(means, sigmas.view(1, K, 1, 1, 1)).log_prob(x.unsqueeze(1)).sum(2).exp()  # (B, K, H, W)
    expected = -torch.log((masks * dens).sum(1)).sum(dim=(1, 2))  # (B,)
    torch.testing.assert_close(mixture_nll(x, means, masks.log(), sigmas), expected)


def test_mixture_nll_with_a_single_full_mask_is_the_gaussian_nll():
    x = torch.zeros(1, 3, 2, 2)
    means = torch.full((1, 2, 3, 2, 2), 0.5)
    log_masks = torch.log(torch.tensor([1.0, 0.0])).view(1, 2, 1, 1).expand(1, 2, 2, 2)  # m = (1, 0)
    nll = mixture_nll(x, means, log_masks, torch.tensor([0.1, 0.2]))
    per_value = 0.5 * (0.5 / 0.1) ** 2 + math.log(0.1) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(nll, torch.tensor([12 * per_value]))


def test_kl_normal_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_normal(mu, logvar), expected)


def test_kl_masks_matches_a_direct_reference_and_handles_zeros():
    g = torch.Generator().manual_seed(0)
    m = torch.softmax(torch.randn(2, 3, 4, 4, generator=g), dim=1)
    log_q = F.log_softmax(torch.randn(2, 3, 4, 4, generator=g), dim=1)
    expected = (m * (m.log() - log_q)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kl_masks(m.log(), log_q), expected)
    torch.testing.assert_close(kl_masks(log_q, log_q), torch.zeros(2), atol=1e-6, rtol=0)
    # a slot whose mask underflowed (log m = -1e4, m = 0) adds exactly nothing
    log_m = torch.cat([m.log(), torch.full((2, 1, 4, 4), -1e4)], dim=1)
    log_q4 = torch.cat([log_q, torch.full((2, 1, 4, 4), -3.0)], dim=1)
    torch.testing.assert_close(kl_masks(log_m, log_q4), expected)
