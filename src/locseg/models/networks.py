"""Encoder-decoder networks g_theta(x, s) shared by the models.

Both networks take the image and the current scope as one 4-channel input ``cat(x, s)`` and return
a reconstruction in [0, 1] plus the KL divergence of their latent code (zero for the auto-encoder).
"""

from __future__ import annotations

import torch
from torch import nn


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last dimension.

    Args:
        mu: (..., D) posterior means.
        logvar: (..., D) posterior log-variances.

    Returns:
        (...) the KL divergence in nats.

    >>> kl_normal(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)  # (...)


def sample_normal(mean: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    """A reparameterised draw z = mean + eps * exp(logvar / 2) in training, the mean otherwise; (..., D)."""
    return mean + torch.randn_like(mean) * (0.5 * logvar).exp() if training else mean  # (..., D)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(1, cout), nn.SiLU())


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(1, cout), nn.SiLU())


def _check_size(image_size: int, stages: int) -> int:
    side = image_size // 2**stages
    if side < 1 or side * 2**stages != image_size:
        raise ValueError(f"image_size {image_size} must be divisible by 2**{stages} (one halving per channel stage)")
    return side


class ConvVAE(nn.Module):
    """Convolutional VAE for simple data (Multi-dSprites).

    Encoder: stride-2 convolutions over ``cat(x, s)`` (B, 4, H, W), then a linear layer to the mean
    and log-variance of a diagonal Gaussian posterior. Decoder: linear, then transposed convolutions
    back to (B, 3, H, W) with a sigmoid. ``forward`` samples z in training and uses the mean in eval.
    """

    def __init__(self, channels: tuple[int, ...], latent_dim: int, image_size: int, in_channels: int = 4,
                 decoder: str = "deconv"):
        super().__init__()
        self.side = _check_size(image_size, len(channels))
        widths = (in_channels, *channels)
        self.encoder = nn.Sequential(*[_conv_block(a, b, 2) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        flat = channels[-1] * self.side * self.side
        hidden = 4 * latent_dim
        self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.SiLU(),
                                       nn.Linear(hidden, 2 * latent_dim))
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, flat), nn.SiLU())
        rev = channels[::-1]
        ups = [_up_block(a, b) for a, b in zip(rev[:-1], rev[1:], strict=True)]
        if decoder == "deconv":
            ups += [_up_block(rev[-1], rev[-1]), nn.Conv2d(rev[-1], 3, 3, padding=1)]
        elif decoder == "light":  # the last transposed convolution writes RGB directly: ~3x fewer FLOPs
            ups.append(nn.ConvTranspose2d(rev[-1], 3, 4, stride=2, padding=1))
        else:
            raise ValueError(f"unknown decoder {decoder!r} (choose deconv or light)")
        self.decoder = nn.Sequential(*ups)
        self.channels = channels

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 4, H, W) -> reconstruction (B, 3, H, W) in [0, 1], KL per image (B,)."""
        stats = self.to_latent(self.encoder(inputs))  # (B, 2Z)
        mean, logvar = stats.chunk(2, dim=1)  # (B, Z) each
        logvar = logvar.clamp(-10.0, 10.0)
        z = sample_normal(mean, logvar, self.training)  # (B, Z)
        kl = kl_normal(mean, logvar)  # (B,)
        h = self.from_latent(z).view(-1, self.channels[-1], self.side, self.side)  # (B, C, h, w)
        return torch.sigmoid(self.decoder(h)), kl  # (B, 3, H, W), (B,)


class SkipAutoencoder(nn.Module):
    """U-Net style auto-encoder with skip connections for complex data (Flowers, Atari); no KL."""

    def __init__(self, channels: tuple[int, ...], image_size: int, in_channels: int = 4):
        super().__init__()
        _check_size(image_size, len(channels))
        widths = (in_channels, *channels)
        self.stem = _conv_block(in_channels, channels[0], 1)
        self.down = nn.ModuleList(_conv_block(a, b, 2) for a, b in zip((channels[0], *channels[:-1]), channels,
                                                                       strict=True))
        self.up = nn.ModuleList()
        for i in reversed(range(len(channels))):
            skip = widths[i] if i > 0 else channels[0]
            self.up.append(nn.ModuleDict({"up": _up_block(channels[i], channels[i]),
                                          "fuse": _conv_block(channels[i] + skip, skip, 1)}))
        self.head = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 4, H, W) -> reconstruction (B, 3, H, W) in [0, 1], zeros (B,)."""
        h = self.stem(inputs)  # (B, C0, H, W)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()  # the bottleneck is not its own skip
        for block in self.up:
            h = block["up"](h)
            h = block["fuse"](torch.cat([h, skips.pop()], dim=1))
        out = torch.sigmoid(self.head(h))  # (B, 3, H, W)
        return out, out.new_zeros(out.shape[0])


class FlatColour(nn.Module):
    """A background decoder that can only draw one colour per image.

    A small strided CNN over ``cat(x, s)``, global average pooling and a linear layer give one RGB
    value per image, broadcast over the image. It cannot draw sprites, so the background step
    cannot explain them; it returns zeros for the KL.
    """

    def __init__(self, width: int = 16, in_channels: int = 4):
        super().__init__()
        self.features = nn.Sequential(_conv_block(in_channels, width, 2), _conv_block(width, width, 2),
                                      _conv_block(width, width, 2))
        self.head = nn.Linear(width, 3)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 4, H, W) -> flat reconstruction (B, 3, H, W) in [0, 1], zeros (B,)."""
        pooled = self.features(inputs).mean(dim=(2, 3))  # (B, width)
        colour = torch.sigmoid(self.head(pooled))  # (B, 3)
        out = colour[:, :, None, None].expand(-1, -1, *inputs.shape[-2:])  # (B, 3, H, W)
        return out, out.new_zeros(out.shape[0])


def build_network(arch: str, channels: tuple[int, ...], latent_dim: int, image_size: int,
                  decoder: str = "deconv") -> nn.Module:
    """The encoder-decoder named by ``arch`` (``vae`` or ``skip_ae``)."""
    if arch == "vae":
        return ConvVAE(channels, latent_dim, image_size, decoder=decoder)
    if arch == "skip_ae":
        return SkipAutoencoder(channels, image_size)
    raise ValueError(f"unknown encoder-decoder {arch!r} (choose vae or skip_ae)")
