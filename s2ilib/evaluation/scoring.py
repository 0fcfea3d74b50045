"""Scoring one (method, condition): FID, KID, IS, R-precision and attribute accuracy of images
produced chunk by chunk (so a large set never sits in memory), against an :class:`EvalContext`
of the dataset's references; plus the generator side (loading a method's generator from the
registry, drawing its images with the same noise for every method).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from s2ilib.core import registry
from s2ilib.evaluation.metrics import frechet_distance
from s2ilib.evaluation.queries import EvaluationError
from s2ilib.evaluation.references import SHUFFLE_REPEATS


@dataclass
class EvalContext:
    """What every (method, condition) of one dataset is scored against."""

    real_feats: torch.Tensor | None  # (n_real, 2048) Inception features of the real test images (None: no FID/KID/IS)
    fid_size: int
    is_head: Any = None
    reader: Any = None
    teacher: Any = None  # object with features(uint8 (B, 3, H, W)) -> (B, D), or None
    rprec_candidates: int = 100
    seed: int = 0
    # Images per chunk. The FID Inception TorchScript costs ~4 s per call on 2 CPU cores whatever
    # the batch (measured), so chunks must be large.
    batch_size: int = 128
    progress: bool = True
    device: str = "cpu"


def _teacher_centre_view(teacher, images: torch.Tensor) -> torch.Tensor:
    """Teacher features of the centre view (the view the encoders were validated against)."""
    from s2ilib.models.teacher import image_views

    size = getattr(teacher, "input_size", None)
    if size is None:  # a plain feature function
        return teacher.features(images) if hasattr(teacher, "features") else teacher(images)
    views = torch.stack([image_views(img, 1, size)[0] for img in images])
    return teacher.features(views).float().cpu()


def _timed(timings: dict[str, float], key: str, fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return out


def _candidates(labels: torch.Tensor, wanted: int) -> int:
    """The largest n_candidates <= wanted that every query can fill with rows of other images."""
    _, counts = labels.unique(return_counts=True)
    return int(min(wanted, len(labels) - int(counts.max()) + 1))


def _rprec(image_feats: torch.Tensor, judge: torch.Tensor, labels: torch.Tensor, ctx: EvalContext) -> dict[str, Any]:
    from s2ilib.evaluation.metrics import r_precision

    k = _candidates(labels, ctx.rprec_candidates)
    if k < 2:
        return {"value": float("nan"), "std": float("nan"), "candidates": k}
    mean, std = r_precision(image_feats, judge, labels=labels, n_candidates=k, seed=ctx.seed)
    return {"value": mean, "std": std, "candidates": k}


def evaluate_images(images_fn: Callable[[int, int], torch.Tensor], n: int, ctx: EvalContext,
                    mentions: list[dict[str, str]] | None = None, judges: dict[str, torch.Tensor] | None = None,
                    image_labels: torch.Tensor | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Score ``n`` images produced chunk by chunk by ``images_fn(start, stop) -> uint8 (b, 3, S, S)``.

    ``mentions``: per image the attributes its caption mentions (attribute accuracy);
    ``judges``: {metric name: (n, D) embeddings in the teacher's space} for R-precision, e.g.
    ``{"r_precision": speech_ts_emb}``; ``image_labels`` (n,): the test image of each query
    (its other captions are not drawn as mismatches). Returns (metrics, seconds per stage).
    """
    from tqdm.auto import tqdm

    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation import metrics

    if n < 2:
        raise EvaluationError(f"evaluate_images: need at least 2 images, got {n}")
    timings: dict[str, float] = {}
    incep, teach, read = [], [], []
    with tqdm(total=n, desc="evaluate", unit="img", disable=not ctx.progress) as bar:
        for s in range(0, n, ctx.batch_size):
            e = min(s + ctx.batch_size, n)
            imgs = _timed(timings, "generate", images_fn, s, e)
            if imgs.dtype != torch.uint8 or len(imgs) != e - s:
                raise EvaluationError(f"images_fn({s}, {e}) must return {e - s} uint8 images, got "
                                      f"{imgs.dtype} {tuple(imgs.shape)}")
            if ctx.real_feats is not None:
                incep.append(_timed(timings, "inception", metrics.inception_features, imgs, batch_size=len(imgs),
                                    progress=False, image_size=ctx.fid_size, device=ctx.device))
            if ctx.teacher is not None and judges:
                teach.append(_timed(timings, "teacher", _teacher_centre_view, ctx.teacher, imgs))
            if ctx.reader is not None and mentions is not None:
                read += _timed(timings, "reader", AR.read_attributes, ctx.reader, imgs)
            bar.update(e - s)
    out: dict[str, Any] = {"n_images": n, "n_real": len(ctx.real_feats) if ctx.real_feats is not None else 0}
    if incep:
        fake = torch.cat(incep)
        out["fid"] = _timed(timings, "fid", frechet_distance, ctx.real_feats, fake)
        out["kid"], out["kid_std"] = _timed(timings, "kid", metrics.kid_from_features, ctx.real_feats, fake,
                                            seed=ctx.seed)
    if incep and ctx.is_head is not None:
        probs = metrics.is_probabilities(ctx.is_head, fake)
        out["is"], out["is_std"] = _timed(timings, "is", metrics.inception_score, probs,
                                          splits=max(1, min(10, n // 2)), seed=ctx.seed)
    if teach:
        feats = torch.cat(teach)
        labels = image_labels if image_labels is not None else torch.arange(n)
        for name, judge in judges.items():
            r = _timed(timings, "r_precision", _rprec, feats, judge, labels, ctx)
            out[name], out[f"{name}_std"] = r["value"], r["std"]
            out["r_precision_candidates"] = r["candidates"]
    if read:
        acc = AR.mention_accuracy(read, mentions)
        floor = [AR.mention_accuracy(read, AR.shuffled_mentions(mentions, ctx.seed + k))["accuracy"]
                 for k in range(SHUFFLE_REPEATS)]
        out.update(attr_acc=acc["accuracy"], attr_acc_shuffled=float(np.mean(floor)),
                   attr_acc_shuffled_std=float(np.std(floor)), n_mentions=acc["n_mentions"],
                   attr_per_attribute=acc["per_attribute"])
    return out, timings


def generator_images_fn(generator, cond: torch.Tensor, seed: int, bf16: bool = True) -> Callable[[int, int], torch.Tensor]:
    """``images_fn`` of :func:`evaluate_images` for a generator: image i = G(z_i, cond[i]); the
    noise of a chunk depends only on (seed, chunk start), so every method draws the same z_i."""
    from s2ilib.models.loading import generate

    dev = next(generator.parameters()).device

    def images(s: int, e: int) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return generate(generator, cond[s:e], seed=seed * 1_000_003 + s, batch_size=max(1, e - s))

    return images



def load_method_generator(paths, name: str, method: str, device: str):
    """The EMA generator that serves ``method`` (its registry ``generator`` run folder) on ``device``."""
    from s2ilib.models.loading import load_generator

    gan = registry.method(method).generator
    path = paths.gan(name, gan) / "generator_ema.pt"
    if not path.is_file():
        raise EvaluationError(f"{path}: generator {gan!r} not trained; run notebook 03 at this preset")
    return load_generator(path, device=device)
