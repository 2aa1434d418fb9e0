"""MONet: the attention network + component VAE baseline (Burgess et al. 2019, arXiv 1901.11390).

Written from the paper (section 2 and appendix B). One forward pass:

1. **Attention** (recurrent, paper section 2.1 and Fig. 2): a U-Net ``alpha_psi`` sees the image and the
   current log-scope and returns per-pixel logits ``alpha_k = sigmoid(logits)``. In log space::

       log s_0 = 0
       log m_k = log s_{k-1} + log alpha_k,  log s_k = log s_{k-1} + log(1 - alpha_k)   k = 1..K-1
       log m_K = log s_{K-1}                 (the last slot takes the remaining scope)

   Slot k is stored at index k - 1: index 0 is attended first and in practice becomes the
   background.
2. **Component VAE**: an encoder sees ``(x, log m_k)`` and gives ``q(z_k)``; a spatial broadcast
   decoder turns ``z_k`` into RGB means ``mu_k`` and a mask logit. All K slots run as one batch of
   B*K images.
3. **Loss** (paper Eq. 3), per image, then averaged over the batch::

       L = -sum_pixels log sum_k m_k N(x; mu_k, sigma_k^2 I)        (sigma_0 = sigma_bg, else sigma_fg)
           + beta * sum_k KL(q(z_k | x, m_k) || N(0, I))
           + gamma * sum_pixels KL(m || m~),   m~ = softmax_k(decoded mask logits)

Open choices (the paper does not pin them down), all documented where they are made:

- The mixture is per *pixel*: the three colour channels share the pixel's mask, so
  ``log N`` is summed over channels *inside* the ``logsumexp`` over slots; the Gaussian constant
  ``-log(sigma sqrt(2 pi))`` is kept, so ``nll`` is a true negative log-likelihood in nats.
- Decoded means pass through a sigmoid, so ``slot_recons`` and ``recon`` lie in [0, 1] and the
  likelihood is evaluated at the same means that are displayed.
- U-Net down-sampling is nearest-neighbour (stride-2 subsampling), up-sampling nearest-neighbour;
  every level has ``unet_channels`` channels; instance norm has learned scale and shift.
- ``z`` is sampled (reparameterised) in training mode and is the posterior mean in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from locseg.config import MonetConfig
from locseg.models.networks import kl_normal, sample_normal
from locseg.types import ModelOutput, mask_locations

__all__ = [
    "AttentionUNet",
    "ComponentVAE",
    "Monet",
    "kl_masks",
    "kl_normal",
    "mixture_nll",
    "scope_step",
]


# --------------------------------------------------------------------------- pure functions


def scope_step(log_scope: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """One step of MONet's stick-breaking attention recursion, in log space.

    ``alpha = sigmoid(logits)``; the slot claims ``m = s * alpha`` and the scope shrinks to
    ``s * (1 - alpha)``. Both use ``logsigmoid``, so nothing underflows to ``log 0``.

    Args:
        log_scope: (B, 1, H, W) log of the scope still unexplained, ``log s_{k-1}``.
        logits: (B, 1, H, W) attention logits of this step.

    Returns:
        ``(log_mask, new_log_scope)``, both (B, 1, H, W): ``log m_k`` and ``log s_k``.

    >>> log_m, log_s = scope_step(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    >>> round(log_m.exp().item(), 3), round(log_s.exp().item(), 3)
    (0.5, 0.5)
    """
    log_mask = log_scope + F.logsigmoid(logits)  # (B, 1, H, W)
    new_log_scope = log_scope + F.logsigmoid(-logits)  # (B, 1, H, W)
    return log_mask, new_log_scope


def mixture_nll(x: Tensor, means: Tensor, log_masks: Tensor, sigmas: Tensor) -> Tensor:
    """Negative log-likelihood of ``x`` under MONet's per-pixel mixture of Gaussians.

    ``-sum_{i} log sum_k m_ki prod_c N(x_ci; mu_kci, sigma_k^2)``, computed as a ``logsumexp`` over
    K of ``log m_k + log N`` so that slots whose mask underflows (``m_k = 0``) are harmless.

    Args:
        x: (B, C, H, W) target image.
        means: (B, K, C, H, W) per-slot means ``mu_k``.
        log_masks: (B, K, H, W) log mixture weights ``log m_k`` (``logsumexp`` over K is 0).
        sigmas: (K,) per-slot standard deviations.

    Returns:
        (B,) the NLL of each image in nats, summed over pixels (the channels of a pixel are one
        event of the mixture).
    """
    sig = sigmas.view(1, -1, 1, 1, 1)  # (1, K, 1, 1, 1)
    z = (x.unsqueeze(1) - means) / sig  # (B, K, C, H, W)
    log_norm = -0.5 * z.square() - torch.log(sig) - 0.5 * math.log(2.0 * math.pi)  # (B, K, C, H, W)
    log_lik = log_masks + log_norm.sum(dim=2)  # (B, K, H, W)
    return -torch.logsumexp(log_lik, dim=1).flatten(1).sum(1)  # (B,)


def kl_masks(log_masks: Tensor, log_decoded: Tensor) -> Tensor:
    """Per-pixel ``KL(m || m~)`` over the K slots, summed over pixels.

    A slot with ``m_k = 0`` (``exp`` underflowed) contributes exactly 0 (``0 log 0 = 0``) and a
    zero gradient; ``log_masks`` itself stays finite because it is built from ``logsigmoid``.

    Args:
        log_masks: (B, K, H, W) log attention masks ``log m_k`` (the "posterior" ``q(c | x)``).
        log_decoded: (B, K, H, W) log decoded masks ``log m~_k`` (``log_softmax`` over K).

    Returns:
        (B,) the KL divergence of each image in nats.
    """
    kl = log_masks.exp() * (log_masks - log_decoded)  # (B, K, H, W)
    return kl.flatten(1).sum(1)  # (B,)


# --------------------------------------------------------------------------- networks


def _conv_norm_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 'same' convolution, instance norm (learned affine), ReLU: one U-Net block."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),  # bias is cancelled by the norm
        nn.InstanceNorm2d(out_ch, affine=True),
        nn.ReLU(),
    )


def _down_size(size: int) -> int:
    """Side length after one stride-2 subsampling ``t[..., ::2, ::2]``."""
    return (size + 1) // 2


class AttentionUNet(nn.Module):
    """MONet's attention network ``alpha_psi(x, log s)``: a U-Net with an MLP bottleneck.

    Down path: ``blocks`` blocks of (3x3 conv, instance norm, ReLU), each but the last followed by
    nearest-neighbour down-sampling by 2. The deepest feature map is flattened and passed through a
    3-layer MLP (hidden, hidden, back to the feature map). Up path: mirrors the down path, each block
    taking the up-sampled features concatenated with the skip connection of its level. A final 1x1
    conv gives one logit channel.

    Args:
        image_size: side of the (square) input images.
        blocks: number of levels (paper: 5 for 64x64 images).
        channels: channels of every level (32 by default).
        hidden: width of the bottleneck MLP's hidden layers (paper: 128).
    """

    def __init__(self, image_size: int, blocks: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.blocks = blocks
        size = image_size
        for _ in range(blocks - 1):
            size = _down_size(size)
        if size < 2:
            raise ValueError(
                f"image_size {image_size} is too small for unet_blocks={blocks}: the bottleneck would "
                f"be {size}x{size}; instance norm needs at least 2x2 (lower unet_blocks)"
            )
        self.bottleneck_shape = (channels, size, size)
        flat = channels * size * size
        self.down = nn.ModuleList(_conv_norm_relu(4 if i == 0 else channels, channels) for i in range(blocks))
        self.mlp = nn.Sequential(
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, flat),
            nn.ReLU(inplace=True),
        )
        self.up = nn.ModuleList(_conv_norm_relu(2 * channels, channels) for _ in range(blocks))
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, x: Tensor, log_scope: Tensor) -> Tensor:
        """Attention logits for one step.

        Args:
            x: (B, 3, H, W) image.
            log_scope: (B, 1, H, W) current log-scope.

        Returns:
            (B, 1, H, W) logits of ``alpha``.
        """
        h = torch.cat([x, log_scope], dim=1)  # (B, 4, H, W)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h)  # (B, C, H_i, W_i)
            skips.append(h)
            if i < self.blocks - 1:
                h = h[:, :, ::2, ::2]  # (B, C, H_{i+1}, W_{i+1}) nearest-neighbour down-sampling
        h = self.mlp(h.flatten(1)).view(-1, *self.bottleneck_shape)  # (B, C, h, w)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")  # (B, C, H_i, W_i)
            h = block(torch.cat([h, skip], dim=1))  # (B, C, H_i, W_i)
        return self.head(h)  # (B, 1, H, W)


class ComponentVAE(nn.Module):
    """MONet's component VAE: conv encoder of ``(x, log m_k)`` and a spatial broadcast decoder.

    Encoder (paper appendix B): four 3x3 stride-2 convolutions with ``(c, c, 2c, 2c)`` channels and
    ReLU, then an MLP (``hidden`` units, ReLU) giving the mean and log-variance of ``z``.

    Decoder (spatial broadcast, Watters et al. 2019): ``z`` is tiled over an (H+8) x (W+8) grid,
    x/y coordinate channels in [-1, 1] are appended, four unpadded 3x3 convolutions with ``c``
    channels and ReLU bring it back to H x W, and a 1x1 convolution gives 4 channels (3 RGB means,
    1 mask logit).

    The first decoder convolution is evaluated in an exactly equivalent cheaper form: without
    padding every output pixel sees a full 3x3 window of the constant tile of ``z``, so its ``z``
    part is ``(sum over taps of W_z) @ z`` (one matrix product) and its coordinate part is the same
    for every image (one small convolution of the grid). The parameters are those of an ordinary
    ``nn.Conv2d(latent_dim + 2, c, 3)`` (``decoder_in``).

    Args:
        image_size: side of the (square) images.
        latent_dim: size of ``z`` (paper: 16).
        channels: base width ``c`` (paper: 32).
        hidden: encoder MLP width (paper: 256).
    """

    def __init__(self, image_size: int, latent_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        c = channels
        widths = (c, c, 2 * c, 2 * c)
        layers: list[nn.Module] = []
        in_ch, size = 4, image_size
        for w in widths:
            layers += [nn.Conv2d(in_ch, w, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_ch, size = w, _down_size(size)
        self.encoder_conv = nn.Sequential(*layers)
        self.encoder_mlp = nn.Sequential(
            nn.Linear(in_ch * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.latent_dim = latent_dim
        self.decoder_in = nn.Conv2d(latent_dim + 2, c, 3)
        self.decoder_conv = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 4, 1),
        )
        side = image_size + 8
        lin = torch.linspace(-1.0, 1.0, side)  # (H+8,)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")  # (H+8, W+8) each
        self.register_buffer("grid", torch.stack([xs, ys]).unsqueeze(0), persistent=False)  # (1, 2, H+8, W+8)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters.

        Args:
            x: (N, 4, H, W) image and log mask.

        Returns:
            ``(mu, logvar)``, each (N, latent_dim).
        """
        h = self.encoder_conv(x).flatten(1)  # (N, 2c * h * w)
        mu, logvar = self.encoder_mlp(h).chunk(2, dim=1)  # (N, D) each
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Spatial broadcast decoding.

        Args:
            z: (N, latent_dim) latents.

        Returns:
            (N, 4, H, W): channels 0-2 are RGB mean logits, channel 3 the mask logit.
        """
        weight = self.decoder_in.weight  # (c, D + 2, 3, 3)
        D = self.latent_dim
        z_part = F.linear(z, weight[:, :D].sum(dim=(2, 3)), self.decoder_in.bias)  # (N, c)
        grid_part = F.conv2d(self.grid, weight[:, D:])  # (1, c, H+6, W+6)
        h = z_part[:, :, None, None] + grid_part  # (N, c, H+6, W+6)
        return self.decoder_conv(h)  # (N, 4, H, W)


# --------------------------------------------------------------------------- model


class Monet(nn.Module):
    """MONet (Burgess et al. 2019): recurrent attention network + component VAE.

    Args:
        cfg: model hyperparameters (K, latent size, widths, beta, gamma, sigmas).
        image_size: side of the square input images the networks are built for.

    Raises:
        ValueError: for a config that cannot build the networks (e.g. too many U-Net levels for
            ``image_size``).

    The returned :class:`~locseg.types.ModelOutput` holds:

    - ``recon`` (B, 3, H, W): ``sum_k m_k mu_k`` with ``m_k`` the attention masks.
    - ``masks`` (B, K, 1, H, W): attention masks ``m_k``; slot 0 is attended first (background).
    - ``slot_recons`` (B, K, 3, H, W): ``mu_k = sigmoid(decoder RGB)`` in [0, 1].
    - ``locations`` (B, K, 2): mask-weighted centres of ``masks``.
    - ``loss``: scalar, mean over the batch of ``nll + beta * kl_z + gamma * kl_mask``.
    - ``terms``: ``{"nll", "kl_z", "kl_mask"}`` detached batch means **already multiplied by their
      weights** (``kl_z`` includes ``beta``, ``kl_mask`` includes ``gamma``), so
      ``sum(terms.values()) == loss`` up to rounding.
    - ``extras``: ``"decoded_masks"`` (B, K, H, W) ``softmax_k`` of the decoded mask logits, and
      ``"scopes"`` (B, K, H, W) the scope *before* each slot's attention step (``scopes[:, 0] = 1``,
      ``scopes[:, K-1] = masks[:, K-1]``).
    """

    def __init__(self, cfg: MonetConfig, image_size: int = 64) -> None:
        super().__init__()
        if cfg.num_slots < 2:
            raise ValueError(f"MONet needs num_slots >= 2, got {cfg.num_slots}")
        if cfg.unet_blocks < 1:
            raise ValueError(f"unet_blocks must be >= 1, got {cfg.unet_blocks}")
        if min(cfg.sigma_bg, cfg.sigma_fg) <= 0:
            raise ValueError("sigma_bg and sigma_fg must be > 0")
        self.cfg = cfg
        self.image_size = image_size
        self.num_slots = cfg.num_slots
        self.attention = AttentionUNet(image_size, cfg.unet_blocks, cfg.unet_channels, cfg.unet_hidden)
        self.vae = ComponentVAE(image_size, cfg.latent_dim, cfg.vae_channels, cfg.vae_hidden)
        sigmas = torch.full((cfg.num_slots,), cfg.sigma_fg)  # (K,)
        sigmas[0] = cfg.sigma_bg
        self.register_buffer("sigmas", sigmas, persistent=False)

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run the recurrent attention: K-1 U-Net steps, the last slot takes the remaining scope.

        Args:
            x: (B, 3, H, W) images in [0, 1].

        Returns:
            ``(log_masks, log_scopes)``, both (B, K, H, W): ``log m_k`` and the log-scope before
            step k (``log_scopes[:, 0] = 0``, ``log_scopes[:, K-1] = log_masks[:, K-1]``).
        """
        log_scope = torch.zeros_like(x[:, :1])  # (B, 1, H, W)
        log_masks, log_scopes = [], []
        for _ in range(self.num_slots - 1):
            log_scopes.append(log_scope)
            log_mask, log_scope = scope_step(log_scope, self.attention(x, log_scope))  # (B, 1, H, W) x2
            log_masks.append(log_mask)
        log_scopes.append(log_scope)
        log_masks.append(log_scope)
        return torch.cat(log_masks, dim=1), torch.cat(log_scopes, dim=1)  # (B, K, H, W) x2

    def forward(self, x: Tensor) -> ModelOutput:
        """Decompose a batch and compute the MONet loss.

        Args:
            x: (B, 3, H, W) images in [0, 1], H = W = ``image_size``.

        Returns:
            The :class:`~locseg.types.ModelOutput` described in the class docstring.

        Raises:
            ValueError: if ``x`` is not (B, 3, image_size, image_size).
        """
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"MONet expects images of shape (B, 3, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}"
            )
        B, _, H, W = x.shape
        K = self.num_slots

        log_masks, log_scopes = self.attend(x)  # (B, K, H, W) x2

        enc_in = torch.cat([x.unsqueeze(1).expand(B, K, 3, H, W), log_masks.unsqueeze(2)], dim=2)  # (B, K, 4, H, W)
        mu, logvar = self.vae.encode(enc_in.reshape(B * K, 4, H, W))  # (B*K, D) x2
        z = sample_normal(mu, logvar, self.training)  # (B*K, D)
        decoded = self.vae.decode(z).view(B, K, 4, H, W)  # (B, K, 4, H, W)
        means = torch.sigmoid(decoded[:, :, :3])  # (B, K, 3, H, W)
        log_decoded = F.log_softmax(decoded[:, :, 3], dim=1)  # (B, K, H, W)

        nll = mixture_nll(x, means, log_masks, self.sigmas)  # (B,)
        kl_z = self.cfg.beta * kl_normal(mu, logvar).view(B, K).sum(1)  # (B,)
        kl_m = self.cfg.gamma * kl_masks(log_masks, log_decoded)  # (B,)
        loss = (nll + kl_z + kl_m).mean()

        masks = log_masks.exp()  # (B, K, H, W)
        recon = (masks.unsqueeze(2) * means).sum(1)  # (B, 3, H, W)
        return ModelOutput(
            recon=recon,
            masks=masks.unsqueeze(2),  # (B, K, 1, H, W)
            slot_recons=means,
            locations=mask_locations(masks.detach()),  # (B, K, 2)
            loss=loss,
            terms={"nll": nll.mean().detach(), "kl_z": kl_z.mean().detach(), "kl_mask": kl_m.mean().detach()},
            extras={"decoded_masks": log_decoded.exp().detach(), "scopes": log_scopes.exp().detach()},
        )
