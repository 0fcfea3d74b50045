"""Conditional StackGAN-v2 generator tree and per-scale discriminators (paper §III-C).

The generator follows Zhang et al.'s StackGAN-v2 as the authors use it: conditioning
augmentation (CA) turns the speech embedding into a Gaussian condition ``c``; an initial stage
maps ``(z, c)`` to a ``base_size`` feature map; each next stage joins ``c`` with the features
again, refines them with residual blocks and doubles the resolution; every stage has its own
image head, so one forward pass gives images at ``base_size * 2**k`` for ``k < branches``.
Each scale has its own discriminator with an unconditional and a conditional (image code joined
with the condition) logit.

Sizes: ``paper`` 64/128/256 (GF = DF = 64), ``small`` 32/64 (GF 16, DF 32), ``smoke`` 16/32 (8, 8).
Images are in [-1, 1], shape ``(B, 3, s, s)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from s2ilib.models.fusion_gan import FusionDiscriminator, FusionGenerator


class GLU(nn.Module):
    """Gated linear unit over channels: the first half gated by the sigmoid of the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(1) % 2:
            raise ValueError(f"GLU needs an even channel count, got {x.size(1)}")
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """x2 spatially: nearest upsample, conv3x3, BN, GLU (the conv makes 2*c_out for the gate)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(c_in, 2 * c_out), nn.BatchNorm2d(2 * c_out), GLU(),
    )


def glu_block(c_in: int, c_out: int) -> nn.Sequential:
    """Same size: conv3x3, BN, GLU."""
    return nn.Sequential(conv3x3(c_in, 2 * c_out), nn.BatchNorm2d(2 * c_out), GLU())


class ResBlock(nn.Module):
    """x + BN(conv(GLU(BN(conv(x))))), channels kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            glu_block(channels, channels), conv3x3(channels, channels), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CondAugment(nn.Module):
    """Conditioning augmentation: embedding (B, in_dim) -> c ~ N(mu, diag(exp(logvar))), (B, ca_dim).

    ``fc -> GLU`` gives ``mu`` and ``logvar``; ``c = mu + eps * exp(logvar / 2)``. The KL term to
    N(0, I) (see :func:`s2ilib.training.gan_losses.kl_loss`) keeps the condition manifold smooth.
    """

    def __init__(self, in_dim: int, ca_dim: int):
        super().__init__()
        self.ca_dim = ca_dim
        self.fc = nn.Linear(in_dim, 4 * ca_dim, bias=True)
        self.glu = GLU()

    def encode(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.glu(self.fc(emb))
        return h[:, : self.ca_dim], h[:, self.ca_dim:]

    def forward(self, emb: torch.Tensor, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Return ``(c, mu, logvar)``; ``eps`` (B, ca_dim) fixes the sample, else drawn from ``generator``."""
        mu, logvar = self.encode(emb)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float32)
        c = mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
        return c, mu, logvar


class InitStage(nn.Module):
    """(z, c) -> fc -> (ngf, 4, 4) -> up blocks halving channels -> (gf_dim, base_size, base_size).

    With base 64 this is StackGAN-v2's INIT_STAGE_G: ngf = 16 * gf_dim and four up blocks.
    """

    def __init__(self, z_dim: int, ca_dim: int, gf_dim: int, base_size: int):
        super().__init__()
        n_up = _log2_steps(base_size, 4, "base_size")
        self.ngf = gf_dim * 2 ** n_up
        self.fc = nn.Sequential(
            nn.Linear(z_dim + ca_dim, self.ngf * 4 * 4 * 2, bias=False),
            nn.BatchNorm1d(self.ngf * 4 * 4 * 2), GLU(),
        )
        self.ups = nn.Sequential(*[up_block(self.ngf >> i, self.ngf >> (i + 1)) for i in range(n_up)])
        self.out_channels = gf_dim

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([c, z], dim=1)).view(-1, self.ngf, 4, 4)
        return self.ups(h)


class NextStage(nn.Module):
    """Joint conditioning: [c tiled over space, h] -> conv -> r_num ResBlocks -> x2 up, channels halved."""

    def __init__(self, ngf: int, ca_dim: int, r_num: int):
        super().__init__()
        if ngf < 2:
            raise ValueError(f"NextStage needs at least 2 feature channels, got {ngf}: raise gf_dim")
        self.joint = glu_block(ngf + ca_dim, ngf)
        self.residual = nn.Sequential(*[ResBlock(ngf) for _ in range(r_num)])
        self.up = up_block(ngf, ngf // 2)
        self.out_channels = ngf // 2

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s = h.size(2)
        c_map = c[:, :, None, None].expand(-1, -1, s, s).to(h.dtype)
        return self.up(self.residual(self.joint(torch.cat([c_map, h], dim=1))))


class ImageHead(nn.Module):
    """Features (B, ngf, s, s) -> image (B, 3, s, s) in [-1, 1]."""

    def __init__(self, ngf: int):
        super().__init__()
        self.conv = conv3x3(ngf, 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(h))


class StackGenerator(nn.Module):
    """G(z, e): noise (B, z_dim) and embedding (B, cond_dim) -> ([images per branch], mu, logvar).

    Image ``k`` has shape (B, 3, base_size * 2**k, base_size * 2**k).
    """

    def __init__(self, branches: int = 3, base_size: int = 64, gf_dim: int = 64, z_dim: int = 100,
                 ca_dim: int = 128, cond_dim: int = 1024, r_num: int = 2):
        super().__init__()
        if not 1 <= branches <= 3:
            raise ValueError(f"branches must be 1-3, got {branches}")
        self.kwargs = dict(branches=branches, base_size=base_size, gf_dim=gf_dim, z_dim=z_dim,
                           ca_dim=ca_dim, cond_dim=cond_dim, r_num=r_num)
        self.z_dim, self.ca_dim, self.cond_dim = z_dim, ca_dim, cond_dim
        self.sizes = [base_size * 2 ** k for k in range(branches)]
        self.ca = CondAugment(cond_dim, ca_dim)
        self.stages = nn.ModuleList([InitStage(z_dim, ca_dim, gf_dim, base_size)])
        for _ in range(1, branches):
            self.stages.append(NextStage(self.stages[-1].out_channels, ca_dim, r_num))
        self.heads = nn.ModuleList([ImageHead(s.out_channels) for s in self.stages])
        init_weights(self)

    def forward(self, z: torch.Tensor, emb: torch.Tensor, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        c, mu, logvar = self.ca(emb, eps=eps, generator=generator)
        images, h = [], None
        for k, (stage, head) in enumerate(zip(self.stages, self.heads)):
            h = stage(z, c) if k == 0 else stage(h, c)
            images.append(head(h))
        return images, mu, logvar


def _sn(module: nn.Module, on: bool) -> nn.Module:
    """Spectral normalisation of a conv / linear layer when ``on`` (SNGAN, Miyato et al. 2018)."""
    return nn.utils.parametrizations.spectral_norm(module) if on else module


def _block_lrelu(c_in: int, c_out: int, kernel: int, stride: int, bn: bool = True, sn: bool = False) -> nn.Sequential:
    pad = 1
    layers: list[nn.Module] = [_sn(nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=sn), sn)]
    if bn and not sn:  # spectral norm replaces batch norm in D
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class ScaleDiscriminator(nn.Module):
    """D_s for one scale: image (B, 3, size, size), condition (B, cond_dim) -> (cond, uncond) logits (B,).

    As StackGAN-v2's D_NET64/128/256: stride-2 4x4 convs take the image to 4x4 (channels
    df, 2df, 4df, 8df, then 16df, 32df beyond 64 px), 3x3 blocks bring wide codes back to 8df;
    the unconditional logit reads the image code, the conditional one reads
    ``conv3x3([code, c tiled])``. Logits are pre-sigmoid (losses use BCE with logits).

    Switches of the "modern" recipe: ``spectral_norm`` normalises every layer (and drops D's batch
    norm); ``projection`` makes the conditional logit the unconditional one plus the inner product
    of a learned projection of ``c`` with the pooled image code (Miyato & Koyama 2018), instead of
    a head on ``[code, c]``.
    """

    def __init__(self, size: int, df_dim: int = 64, cond_dim: int = 128, spectral_norm: bool = False,
                 projection: bool = False, contrastive: bool = False, contrast_dim: int | None = None):
        super().__init__()
        n_down = _log2_steps(size, 4, "discriminator size")
        if n_down < 1:
            raise ValueError(f"discriminator size must be at least 8, got {size}")
        self.size, self.cond_dim = size, cond_dim
        sn = spectral_norm
        self.projection = projection
        chans = [df_dim * 2 ** i for i in range(n_down)]
        layers = [_block_lrelu(3, chans[0], 4, 2, bn=False, sn=sn)]
        layers += [_block_lrelu(a, b, 4, 2, sn=sn) for a, b in zip(chans[:-1], chans[1:])]
        code = chans[-1]
        while code > 8 * df_dim:  # beyond 64 px: 3x3 blocks narrow the code back to 8 * df
            layers.append(_block_lrelu(code, code // 2, 3, 1, sn=sn))
            code //= 2
        self.encode = nn.Sequential(*layers)
        self.code_dim = code
        if projection:
            self.embed = _sn(nn.Linear(cond_dim, code, bias=False), sn)
        else:
            self.joint = _block_lrelu(code + cond_dim, code, 3, 1, sn=sn)
            self.cond_logit = _sn(nn.Conv2d(code, 1, kernel_size=4, stride=4), sn)
        self.uncond_logit = _sn(nn.Conv2d(code, 1, kernel_size=4, stride=4), sn)
        # contrastive: the condition (``cond_dim``, or ``contrast_dim`` when the term pairs images with
        # another vector, ``forward(c_pair=...)``) mapped into the pooled image code's space, for the
        # InfoNCE term of s2ilib.training.tree_step (``forward(..., pair=True)``)
        self.contrast = (_sn(nn.Linear(contrast_dim or cond_dim, code, bias=False), sn) if contrastive else None)
        if not sn:  # orthogonal init would fight the spectral-norm parametrisation
            init_weights(self)

    def forward(self, x: torch.Tensor, c: torch.Tensor, pair: bool = False,
                c_pair: torch.Tensor | None = None) -> tuple:
        """(cond logit (B,), uncond logit (B,)); ``pair``: also (pooled code (B, K), mapped ``c_pair``
        (default ``c``) (B, K))."""
        if x.shape[-1] != self.size:
            raise ValueError(f"ScaleDiscriminator({self.size}) got images of size {tuple(x.shape)}")
        code = self.encode(x)
        uncond = self.uncond_logit(code).view(-1)
        if self.projection:
            cond = uncond + (self.embed(c.to(code.dtype)) * code.sum(dim=(2, 3))).sum(dim=1)
        else:
            c_map = c[:, :, None, None].expand(-1, -1, 4, 4).to(code.dtype)
            cond = self.cond_logit(self.joint(torch.cat([c_map, code], dim=1))).view(-1)
        if not pair:
            return cond, uncond
        if self.contrast is None:
            raise ValueError("pair=True needs a discriminator built with contrastive=True")
        c_pair = c if c_pair is None else c_pair
        return cond, uncond, (code.mean(dim=(2, 3)), self.contrast(c_pair.to(code.dtype)))


def init_weights(module: nn.Module) -> None:
    """The authors' init: orthogonal conv / linear weights, BN gamma ~ N(1, 0.02), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_discriminators(sizes: list[int], df_dim: int, cond_dim: int, spectral_norm: bool = False,
                         projection: bool = False, contrastive: bool = False,
                         contrast_dim: int | None = None) -> nn.ModuleList:
    """One :class:`ScaleDiscriminator` per generator branch size."""
    return nn.ModuleList([ScaleDiscriminator(s, df_dim, cond_dim, spectral_norm, projection, contrastive, contrast_dim)
                          for s in sizes])


def _fusion(cfg: Any) -> bool:
    """Whether a GanConfig (or a config without the key, from before it existed) is the fusion arch."""
    return getattr(cfg, "arch", "stackgan2") == "fusion"


def generator_kwargs(cfg: Any, cond_dim: int) -> dict[str, Any]:
    """Generator arguments from a :class:`s2ilib.core.config.GanConfig` and the embedding size
    (``arch`` = "fusion": :class:`s2ilib.models.fusion_gan.FusionGenerator` at the output size)."""
    if _fusion(cfg):
        return dict(arch="fusion", size=output_sizes(cfg)[-1], gf_dim=cfg.gf_dim, z_dim=cfg.z_dim,
                    ca_dim=cfg.ca_dim, cond_dim=cond_dim)
    return dict(branches=cfg.branches, base_size=cfg.base_size, gf_dim=cfg.gf_dim, z_dim=cfg.z_dim,
                ca_dim=cfg.ca_dim, cond_dim=cond_dim, r_num=cfg.r_num)


def output_sizes(cfg: Any) -> list[int]:
    """Image sizes the generator of ``cfg`` outputs: every branch of the tree, or the fusion
    generator's one image at the tree's final size ``base_size * 2**(branches - 1)``."""
    sizes = [cfg.base_size * 2 ** k for k in range(cfg.branches)]
    return sizes[-1:] if _fusion(cfg) else sizes


def make_generator(kwargs: dict[str, Any]) -> nn.Module:
    """The generator recorded by ``kwargs`` (a checkpoint's ``kwargs``; ``arch`` picks the class)."""
    kwargs = dict(kwargs)
    if kwargs.pop("arch", "stackgan2") == "fusion":
        return FusionGenerator(**kwargs)
    return StackGenerator(**kwargs)


def build_networks(cfg: Any, cond_dim: int) -> tuple[nn.Module, nn.ModuleList]:
    """(G, per-scale Ds) of a GanConfig. Fusion: one D at the output size, conditioned on the
    embedding itself; the tree: StackGAN-v2's Ds conditioned on the CA mean (``ca_dim``)."""
    G = make_generator(generator_kwargs(cfg, cond_dim))
    if _fusion(cfg):
        return G, nn.ModuleList([FusionDiscriminator(s, cfg.df_dim, cond_dim) for s in G.sizes])
    contrast_dim = cond_dim if getattr(cfg, "contrastive_cond", "mu") == "embedding" else None
    return G, build_discriminators(G.sizes, cfg.df_dim, cfg.ca_dim, spectral_norm=cfg.spectral_norm,
                                   projection=cfg.projection, contrastive=cfg.contrastive > 0,
                                   contrast_dim=contrast_dim)


def _log2_steps(size: int, start: int, what: str) -> int:
    steps = math.log2(size / start) if size > 0 else -1
    if size < start or steps != int(steps):
        raise ValueError(f"{what} must be {start} times a power of two, got {size}")
    return int(steps)
