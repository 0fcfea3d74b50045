"""A one-stage generator whose every block is modulated by the condition (DF-GAN, Tao et al. 2022).

The third generator recipe (``gan.recipe = "dfgan"``, ``gan.arch = "fusion"``), for when
StackGAN-v2's tree, which sees the condition only at its input and at the joins between stages,
does not show the caption in the image. Here the speech embedding reaches every block:

* **G**: ``z -> fc -> (8 gf, 4, 4)``, then one :class:`FusionBlock` per doubling up to the output
  size. Each block upsamples, then applies twice ``conv3x3(LReLU(affine(LReLU(affine(h, y)), y)))``
  where ``affine(h, y) = gamma(y) * h + beta(y)`` is a per-channel scale and shift predicted by a
  small MLP from ``y = [z, W e]`` (the noise and a linear projection of the embedding, as in
  DF-GAN's later code); a 1x1 shortcut carries the block's input. No batch norm anywhere.
* **D**: ``conv3x3`` then residual down blocks to 4x4; the logit reads ``[code, e tiled]``
  (DF-GAN's "D_GET_LOGITS"). One logit, no unconditional head: the trainer's matching-aware
  gradient penalty on real images with their own conditions
  (:func:`s2ilib.training.fusion_step.ma_gradient_penalty`) and the mismatched pairs make it
  follow the condition.

The generator keeps :class:`s2ilib.models.gan.StackGenerator`'s interface: ``forward(z, emb)``
returns ``([image], cond, zeros)`` where ``cond`` is the embedding itself (what D is conditioned
on; no conditioning augmentation, so the KL term does not apply), one image of
``size`` px in [-1, 1].
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

AFFINE_HIDDEN = 256


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class Affine(nn.Module):
    """h (B, C, H, W), y (B, Y) -> gamma(y) * h + beta(y); starts as the identity (gamma 1, beta 0)."""

    def __init__(self, y_dim: int, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(y_dim, AFFINE_HIDDEN), nn.ReLU(inplace=True),
                                 nn.Linear(AFFINE_HIDDEN, 2 * channels))
        nn.init.zeros_(self.mlp[2].weight)
        with torch.no_grad():
            self.mlp[2].bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(y).to(h.dtype).chunk(2, dim=1)
        return gamma[:, :, None, None] * h + beta[:, :, None, None]


class FusionBlock(nn.Module):
    """x2 upsample, then two (fuse, conv3x3) pairs, each fuse = two affine + LReLU; 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, y_dim: int):
        super().__init__()
        self.affines = nn.ModuleList([Affine(y_dim, c) for c in (c_in, c_in, c_out, c_out)])
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def _fuse(self, h: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        h = _lrelu(self.affines[k](h, y))
        return _lrelu(self.affines[k + 1](h, y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        r = self.conv2(self._fuse(self.conv1(self._fuse(x, y, 0)), y, 2))
        return self.shortcut(x) + r


def _doublings(size: int, what: str) -> int:
    """n with size = 4 * 2**n, n >= 1 (both networks go between 4 px and ``size``)."""
    n = int(math.log2(size // 4)) if size >= 4 else 0
    if size < 8 or 4 * 2 ** n != size:
        raise ValueError(f"fusion {what} size must be 4 times a power of two and >= 8, got {size}")
    return n


def _widths(size: int, base: int) -> list[int]:
    """Channels at 4, 8, ..., size px: base * 8 down to base, halving over the last doublings."""
    n = _doublings(size, "generator")
    return [base * min(8, 2 ** (n - k)) for k in range(n + 1)]


class FusionGenerator(nn.Module):
    """G(z, e): noise (B, z_dim), embedding (B, cond_dim) -> ([image (B, 3, size, size)], e, zeros)."""

    arch = "fusion"

    def __init__(self, size: int = 64, gf_dim: int = 32, z_dim: int = 100, ca_dim: int = 128,
                 cond_dim: int = 1024):
        super().__init__()
        self.kwargs = dict(arch="fusion", size=size, gf_dim=gf_dim, z_dim=z_dim, ca_dim=ca_dim, cond_dim=cond_dim)
        self.z_dim, self.ca_dim, self.cond_dim = z_dim, ca_dim, cond_dim
        self.sizes = [size]
        widths = _widths(size, gf_dim)
        self.project = nn.Linear(cond_dim, ca_dim)  # the embedding's share of every block's affine input
        self.fc = nn.Linear(z_dim, widths[0] * 16)
        y_dim = z_dim + ca_dim
        self.blocks = nn.ModuleList([FusionBlock(a, b, y_dim) for a, b in zip(widths[:-1], widths[1:])])
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, emb: torch.Tensor, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        """``eps`` and ``generator`` are accepted for the StackGenerator interface and unused."""
        y = torch.cat([z, self.project(emb)], dim=1)
        h = self.fc(z).view(len(z), -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        img = torch.tanh(self.to_rgb(_lrelu(h)))
        return [img], emb, torch.zeros_like(emb)


class DownBlock(nn.Module):
    """x (B, c_in, s, s) -> (B, c_out, s/2, s/2): residual 4x4 stride-2 + 3x3 convs, learned gate."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.shortcut(x), 2) + self.gamma * self.body(x)


class FusionDiscriminator(nn.Module):
    """D(x, e): image (B, 3, size, size), condition (B, cond_dim) -> logit (B,)."""

    def __init__(self, size: int = 64, df_dim: int = 32, cond_dim: int = 1024):
        super().__init__()
        widths = [df_dim * min(16, 2 ** k) for k in range(_doublings(size, "discriminator") + 1)]
        self.size, self.cond_dim = size, cond_dim
        self.conv_img = nn.Conv2d(3, widths[0], 3, 1, 1)
        self.blocks = nn.Sequential(*[DownBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.joint = nn.Sequential(nn.Conv2d(widths[-1] + cond_dim, 2 * df_dim, 3, 1, 1),
                                   nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * df_dim, 1, 4, 1, 0))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            raise ValueError(f"FusionDiscriminator({self.size}) got images of size {tuple(x.shape)}")
        code = self.blocks(self.conv_img(x))
        c_map = c[:, :, None, None].expand(-1, -1, 4, 4).to(code.dtype)
        return self.joint(torch.cat([code, c_map], dim=1)).view(-1)
