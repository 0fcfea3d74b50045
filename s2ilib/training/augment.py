"""Differentiable augmentation for the discriminators (DiffAugment, Zhao et al. 2020), geometry only.

D sees ``T(x)`` for real, wrong and generated images in both the D and the G updates, so it
cannot memorise a small training set. Only translation and cutout are offered: colour
transforms would change what the caption says (a "red head" must stay red). Every draw comes
from the caller's ``torch.Generator`` (the step's seeded generator), so a resumed run makes the
same draws as an uninterrupted one. Images (B, C, H, W), any value range.

``shard`` = (rows, n): ``x`` holds rows ``rows`` of a batch of ``n`` split over ranks
(:mod:`s2ilib.training.distributed`); the draws are made for all ``n`` rows and these kept, so
the ranks together make the single-process draws.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

POLICIES = ("translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); ``""`` -> (); unknown names are errors."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {bad}; choose from {POLICIES}")
    return names


def _randint(low: int, high: int, b: int, g: torch.Generator, shard) -> torch.Tensor:
    """(b, 1, 1) integers in [low, high); with ``shard`` = (rows, n), rows ``rows`` of n draws."""
    if shard is None:
        return torch.randint(low, high, (b, 1, 1), generator=g)
    rows, n = shard
    return torch.randint(low, high, (n, 1, 1), generator=g)[rows]


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125, shard=None) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, zero-filling what comes in."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = _randint(-sh, sh + 1, b, g, shard).to(x.device)
    tx = _randint(-sw, sw + 1, b, g, shard).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[torch.arange(b, device=x.device)[:, None, None], gy, gx].permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5, shard=None) -> torch.Tensor:
    """Zero one square of side ``ratio`` x size per image, at a random centre (may be clipped)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(0, h + (1 - ch % 2), b, g, shard).to(x.device)
    cx = _randint(0, w + (1 - cw % 2), b, g, shard).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij")
    gy = (gy[None] + cy - ch // 2).clamp(0, h - 1)
    gx = (gx[None] + cx - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[torch.arange(b, device=x.device)[:, None, None], gy, gx] = 0
    return x * mask[:, None]


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], g: torch.Generator, shard=None) -> torch.Tensor:
    """Apply the policy's transforms in order; ``""`` returns ``x`` unchanged."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        x = translation(x, g, shard=shard) if name == "translation" else cutout(x, g, shard=shard)
    return x
