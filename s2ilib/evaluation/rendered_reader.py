"""An attribute reader with a ceiling near 1: trained on freshly rendered images of every attribute
value (the procedural renderer makes unlimited labelled images, :mod:`s2ilib.data.rendered`), in
the generator's view, with augmentation that mimics generated images (blur, noise, small shifts;
never a hue change, since colour is what is read), so it scores attributes, not sharpness.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from s2ilib.core.device import bf16_autocast
from s2ilib.core.io import seed_everything
from s2ilib.evaluation.attribute_reader import (AttributeReader, _accuracy_per_attribute, _predict,
                                                encode_attributes, save_attribute_reader)


def blur_images(images_uint8: torch.Tensor, size: int | None) -> torch.Tensor:
    """Down to ``size`` px (antialiased bilinear) and back up (bilinear), uint8; None: unchanged.
    The blur of :func:`reader_accuracy_table` ("blurred to 32 px and back")."""
    if size is None or size >= images_uint8.shape[-1]:
        return images_uint8
    out = []
    for b in images_uint8.split(256):
        x = b.float()
        small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
                   .round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images_uint8


def augment_generated(x: torch.Tensor, gen: torch.Generator, p_blur: float = 0.5, min_blur_size: int = 12,
                      p_noise: float = 0.5, max_noise: float = 0.12, max_shift: float = 0.08,
                      max_scale: float = 0.08, brightness: float = 0.08, contrast: float = 0.12) -> torch.Tensor:
    """Make prepared images (B, 3, S, S) in [-1, 1] look like generated ones, colours kept.

    Per image: horizontal flip; a translation of up to ``max_shift`` of the side and a zoom of up
    to ``max_scale`` (reflection at the border); with ``p_blur`` a blur (down to a random size in
    [``min_blur_size``, S) and back); with ``p_noise`` additive noise (per pixel, or blotchy: drawn at
    S/4 or S/2 and upsampled, like GAN speckle and texture) of std up to ``max_noise``; brightness x
    (1 +- ``brightness``) and contrast around the image mean x (1 +- ``contrast``), the same on the
    three channels. No hue or saturation change: colour is what the reader must read.
    """
    b, _, s, _ = x.shape
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    flip = u(b) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    zoom = 1 + (2 * u(b) - 1) * max_scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = (2 * u(b, 2) - 1) * max_shift * 2  # grid units: the side is 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    blur = (u(b) < p_blur).nonzero().flatten().tolist()
    if blur:
        sizes = torch.randint(min_blur_size, s, (len(blur),), generator=gen).tolist()
        x = x.clone()
        for i, t in zip(blur, sizes):
            small = F.interpolate(x[i:i + 1], size=(t, t), mode="bilinear", align_corners=False, antialias=True)
            x[i:i + 1] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)
    noisy = (u(b) < p_noise).view(-1, 1, 1, 1)
    level = u(b).view(-1, 1, 1, 1) * max_noise * 2  # [-1, 1] scale: twice the [0, 1] std
    res = [s, s // 2, s // 4][int(torch.randint(3, (1,), generator=gen))]
    noise = torch.randn(b, 3, res, res, generator=gen)
    if res != s:
        noise = F.interpolate(noise, size=(s, s), mode="bilinear", align_corners=False)
    x = x + torch.where(noisy, level * noise, torch.zeros(()))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = 1 + (2 * u(b) - 1).view(-1, 1, 1, 1) * contrast
    br = 1 + (2 * u(b) - 1).view(-1, 1, 1, 1) * brightness
    x = ((x - mean) * c + mean + 1) * br - 1
    return x.clamp(-1, 1)


def _labels_to_targets(reader: AttributeReader, labels: Any) -> dict[str, torch.Tensor]:
    """(N, n_attributes) value indices in the reader's vocabulary order, or [{attr: value}] -> targets."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 2 or labels.shape[1] != len(reader.vocabulary):
            raise ValueError(f"labels must be (N, {len(reader.vocabulary)}), got {tuple(labels.shape)}")
        return {a: labels[:, k].long() for k, a in enumerate(reader.vocabulary)}
    return encode_attributes(list(labels), reader.vocabulary)


def reader_accuracy_table(reader: AttributeReader, images: torch.Tensor, labels: Any,
                          blur_sizes: tuple = (None, 32, 16)) -> dict[str, dict[str, float]]:
    """Per-attribute accuracy of ``reader`` on uint8 ``images`` (N, 3, H, W), sharp and blurred.

    ``labels``: (N, n_attributes) value indices in the reader's vocabulary order (as
    :func:`s2ilib.data.rendered.rendered_batch` gives) or [{attr: value}] (dataset records).
    Returns {"sharp" | "blur<k>": {attr: accuracy, ..., "mean": mean over attributes}}, the blur
    being :func:`blur_images` to ``k`` px and back.
    """
    targets = _labels_to_targets(reader, labels)
    table = {}
    for k in blur_sizes:
        probs = _predict(reader, reader.prepare(blur_images(images, k)))
        acc = _accuracy_per_attribute(probs, targets)
        vals = [v for v in acc.values() if v == v]
        acc["mean"] = float(sum(vals) / len(vals)) if vals else float("nan")
        table["sharp" if k is None else f"blur{k}"] = acc
    return table


def train_rendered_reader(kind: str, size: int = 64, view: str | bool = "auto", n_train: int = 16000,
                          epochs: int = 10, seed: int = 0, n_holdout: int = 1000, width: int = 32, depth: int = 2,
                          pool: str = "attention", batch_size: int = 64, lr: float = 3e-3,
                          render_size: int | None = None, workers: int = 1, augment: bool = True,
                          bf16: bool = True, progress: bool = True, out_path: str | Path | None = None,
                          extra_report: dict[str, Any] | None = None) -> tuple[AttributeReader, dict[str, Any]]:
    """An attribute reader trained on ``n_train`` freshly rendered images of ``kind`` at the
    generators' ``view`` (:func:`s2ilib.data.rendered.rendered_batch`: every value of every attribute,
    drawn independently), with :func:`augment_generated` (blur, noise, shifts, colour-preserving
    jitter) so it reads attributes rather than sharpness.

    The images are rendered once (a cache; ``workers`` processes) and seen ``epochs`` times with
    fresh augmentations. ``n_holdout`` further images of the same seed (never trained on) give
    the report: ``holdout_accuracy`` (sharp), ``holdout_table`` (sharp, blur 32, blur 16), chance
    (uniform labels: 1 / number of values), sizes and times. Same format as
    :func:`train_attribute_reader`: save / load / :func:`read_attributes` work unchanged.
    """
    from s2ilib.data.rendered import rendered_batch, resolve_view
    from s2ilib.data.vocab import vocabulary as kind_vocabulary

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = kind_vocabulary(kind)
    view = resolve_view(kind, view)
    t0 = time.time()
    images, labels = rendered_batch(kind, n_train, size, seed, view, start=0, render_size=render_size,
                                    workers=workers)
    ho_images, ho_labels = rendered_batch(kind, n_holdout, size, seed, view, start=n_train,
                                          render_size=render_size, workers=workers)
    render_s = time.time() - t0
    reader = AttributeReader(vocab, size, width, depth, pool)
    x = reader.prepare(images)
    del images
    y = _labels_to_targets(reader, labels)
    steps_per_epoch = max(1, len(x) // batch_size)
    opt = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t1 = time.time()
    for _ in tqdm(range(epochs), desc=f"rendered reader ({kind})", disable=not progress):
        reader.train()
        perm = torch.randperm(len(x), generator=gen)[:steps_per_epoch * batch_size]
        for b in perm.view(steps_per_epoch, -1):
            xb = augment_generated(x[b], gen) if augment else x[b]
            with bf16_autocast(bf16, "cpu"):
                logits = reader(xb)
                loss = sum(F.cross_entropy(l.float(), y[a][b]) for a, l in logits.items())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t1
    reader.eval()
    table = reader_accuracy_table(reader, ho_images, ho_labels) if n_holdout else {}
    held = {a: v for a, v in table.get("sharp", {}).items() if a != "mean"}
    report = {"source": "rendered", "kind": kind, "view": view, "holdout_accuracy": held,
              "holdout_mean": table.get("sharp", {}).get("mean", float("nan")), "holdout_table": table,
              "chance_uniform": {a: 1 / len(v) for a, v in vocab.items()}, "n_train": n_train,
              "n_holdout": n_holdout, "epochs": epochs, "seed": seed, "render_seconds": render_s,
              "train_seconds": train_s, "image_size": size, "width": width, "depth": depth, "pool": pool,
              "augment": augment, **(extra_report or {})}
    reader.report = report
    if out_path is not None:
        save_attribute_reader(reader, out_path)
    return reader, report
